#!/usr/bin/env python3
"""A real pygeoapi OGC API - Records server for eodispatch's catalogue tests.

    python tests/ogc/records_server.py --port 0 --data DIR --records FOLDER

Loads every APEx service record below FOLDER (`algorithm_catalog/*/*/records/*.json`, the
repository layout of catalog/apex) into a TinyDB file in DIR, writes a pygeoapi
configuration with one collection `apex` served by pygeoapi's own `TinyDBCatalogue`
record provider (server.limits: at most 10 items a page, so that clients page along `next`
links), generates pygeoapi's OpenAPI document, imports pygeoapi's Flask app and serves
it, threaded, on 127.0.0.1. Prints one line `READY http://127.0.0.1:PORT` once it answers.
Everything OGC API is pygeoapi's; this file only sets it up.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from tinydb import TinyDB
from werkzeug.serving import make_server


def write_config(data, base_url, port, db):
    config = {
        'server': {
            'bind': {'host': '127.0.0.1', 'port': port},
            'url': base_url,
            'mimetype': 'application/json; charset=UTF-8',
            'encoding': 'utf-8',
            'languages': ['en-US'],
            'cors': False,
            'pretty_print': False,
            'limits': {'default_items': 10, 'max_items': 10},
            'map': {
                'url': 'https://tile.openstreetmap.org/{z}/{x}/{y}.png',
                'attribution': 'OpenStreetMap',
            },
        },
        'logging': {'level': os.environ.get('OGC_LOG_LEVEL', 'ERROR'),
                    'logfile': str(data / 'pygeoapi.log')},
        'metadata': {
            'identification': {
                'title': 'eodispatch test OGC API - Records server',
                'description': 'pygeoapi with the APEx catalogue records',
                'keywords': ['eodispatch', 'test'],
                'keywords_type': 'theme',
                'terms_of_service': 'https://creativecommons.org/licenses/by/4.0/',
                'url': 'https://example.org/eodispatch',
            },
            'license': {'name': 'Apache 2.0', 'url': 'https://www.apache.org/licenses/LICENSE-2.0'},
            'provider': {'name': 'eodispatch tests', 'url': 'https://example.org'},
            'contact': {'name': 'eodispatch tests', 'email': 'tests@example.org'},
        },
        'resources': {
            'apex': {
                'type': 'collection',
                'title': 'APEx algorithm catalogue',
                'description': 'The APEx service records',
                'keywords': ['apex'],
                'extents': {'spatial': {'bbox': [-180, -90, 180, 90],
                                        'crs': 'http://www.opengis.net/def/crs/OGC/1.3/CRS84'}},
                'providers': [{
                    'type': 'record',
                    'name': 'TinyDBCatalogue',
                    'data': str(db),
                    'id_field': 'id',
                    'time_field': 'updated',
                    'title_field': 'title',
                }],
            },
        },
    }
    path = data / 'pygeoapi-config.yml'
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Late:
    """A WSGI app set once the socket is bound (pygeoapi must know the port first)."""
    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--data', required=True)
    ap.add_argument('--records', required=True, help='a folder laid out like the APEx repository')
    args = ap.parse_args()
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)

    db_path = data / 'records.tinydb'
    db = TinyDB(db_path)
    db.truncate()
    for f in sorted(Path(args.records).glob('algorithm_catalog/*/*/records/*.json')):
        db.insert(json.loads(f.read_text()))
    db.close()

    late = Late()
    server = make_server('127.0.0.1', args.port, late, threaded=True)
    port = server.server_port
    own_url = f'http://127.0.0.1:{port}'
    config = write_config(data, own_url, port, db_path)
    openapi = data / 'pygeoapi-openapi.yml'
    os.environ['PYGEOAPI_CONFIG'] = str(config)
    os.environ['PYGEOAPI_OPENAPI'] = str(openapi)

    from pygeoapi.openapi import generate_openapi_document
    openapi.write_text(generate_openapi_document(config, 'yaml'))
    from pygeoapi.flask_app import APP

    late.app = APP
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f'{own_url}/collections/apex?f=json', timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit('the server did not answer within 30 s')
        time.sleep(0.05)
    print(f'READY {own_url}', flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
