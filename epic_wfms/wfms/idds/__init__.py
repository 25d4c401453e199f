"""iDDS as the backend for data-driven and conditional ePIC workflows, and the prompt pool."""
