"""ePIC's plug-ins inside the PanDA server (VO ``epic``): the Adder's output registration."""
