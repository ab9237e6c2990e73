"""Tested solutions to the lessons' exercises (``lesson02`` answers notebook 02, ...)."""
