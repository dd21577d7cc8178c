"""Developer scripts run by the Makefile and CI (not imported by the application)."""
