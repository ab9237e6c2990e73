"""Tested solutions to the lessons' exercises (``lesson02`` answers notebook 02, ...)."""

# the submodules are imported by name (``from yi_helpers.solutions import lesson04``)
__all__: list[str] = []
