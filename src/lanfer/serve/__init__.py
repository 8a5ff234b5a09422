"""``lanfer serve``: a local web page and HTTP API over a model, offline, from one command.

Typical use::

    lanfer serve                                   # the shipped default model on http://127.0.0.1:8000/
    curl -F files=@group.jpg 'http://127.0.0.1:8000/v1/predict?attention=true'

or from Python::

    from lanfer.predict import Predictor
    from lanfer.serve import ServeConfig, create_app
    app = create_app(Predictor.from_pretrained(), ServeConfig(token="secret"))   # any ASGI server runs it

The package, one concern per module:

* ``limits``: :class:`ServeConfig` (limits, batching, token), :class:`ApiError` and the decoder of uploads;
* ``uploads``: multipart bodies read into memory with a byte limit (nothing is written to disk);
* ``batcher``: :class:`Batcher`, faces of many requests in one model call, with a bounded queue;
* ``streams``: the page's webcam streams (``?stream=ID``): tracks and smoothing across a stream's frames;
* ``app``: the routes, the token check, :func:`create_app` and :func:`run_server`;
* ``process``: :func:`serve_in_subprocess`, a server in a child process (tests, benchmarks, notebooks);
* ``static/``: the page (plain HTML, JS and CSS, no build step, no CDN) and the API reference page.
"""
from .app import create_app, run_server
from .batcher import Batcher, QueueFull
from .limits import TOKEN_ENV, ApiError, ServeConfig, decode_image

__all__ = ["create_app", "run_server", "Batcher", "QueueFull", "ServeConfig", "ApiError", "decode_image", "TOKEN_ENV"]
