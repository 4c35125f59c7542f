"""From Alida's field definitions and values to warehouse columns and rows."""
