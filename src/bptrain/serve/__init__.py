"""`bptrain serve`: the draw-a-digit page, its JSON API, and the inference behind both.

inference.py turns one image into the record of `predict` plus the forward and backward pass
(no web library needed); app.py is the Starlette app (routes, body caps, JSON errors);
server.py runs it under uvicorn with bptrain's signals and exit codes; static/ is the page.
"""
