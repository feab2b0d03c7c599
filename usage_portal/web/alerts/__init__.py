"""Health-drop alerts: the CSM's worklist and closing an alert with a note."""
