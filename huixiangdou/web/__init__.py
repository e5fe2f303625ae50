"""The web console and the assistant as an OpenAI-compatible API: `python -m huixiangdou.web`.

The aiohttp app is built by app.create_app; each /api/ concern has its own module; the pages are
static files in static/ (no build step). It does not answer messages itself: the worker does.
"""
