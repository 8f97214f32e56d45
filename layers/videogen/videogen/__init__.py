"""Domain package shared by every Lambda of the video-generation pipeline.

Handlers in ``functions/*/app.py`` stay thin: they parse the event, call one
function from :mod:`videogen.service`, and map the result to a response.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
