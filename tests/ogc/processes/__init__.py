"""eodispatch's test processes for pygeoapi (OGC API - Processes).

Each module holds one processor class deriving from pygeoapi's ``BaseProcessor``
with its ``PROCESS_METADATA``; ``tests/ogc/server.py`` names them in the pygeoapi
configuration it writes (``processor.name: processes.<module>.<Class>``) and adds
the server's own settings to each processor definition:

``base_url``
    the server's URL (``http://127.0.0.1:PORT``), for absolute result hrefs;
``outputs_dir`` / ``outputs_url``
    the folder the server publishes as static files, and its URL;
``jobs_db``
    the TinyDB file of pygeoapi's job manager (the slow process reads it to notice
    that its job was dismissed).
"""
