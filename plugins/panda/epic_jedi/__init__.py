"""JEDI plugins for VO ``epic``; installed on JEDI hosts, imported by JEDI by module path."""
