"""One router per resource: analysis, galleries, health."""
