#!/usr/bin/env python3
"""A real pygeoapi (OGC API - Processes) server for eodispatch's tests.

    python tests/ogc/server.py --port 0 --data DIR [--public-url URL] \
        [--introspect URL --client-id ID --client-secret SECRET]

Writes a pygeoapi configuration into DIR (server.url = the address it really listens
on, or --public-url when a forwarder stands in front of it; the TinyDB job manager's file and result folder in DIR, so jobs survive a restart
on the same DIR; the test processes of tests/ogc/processes; the log in
DIR/pygeoapi.log), generates pygeoapi's OpenAPI document, imports pygeoapi's Flask
app and serves it, threaded, on 127.0.0.1. Prints one line `READY http://127.0.0.1:PORT`
once it answers.

Everything OGC API is pygeoapi's own code. What this file adds, in a WSGI middleware
around the app, is test plumbing only:
  - GET /outputs/...: the static folder DIR/outputs, where the processes write result
    files (GeoTIFFs, STAC JSON);
  - every request is recorded (method, path, query, whether an Authorization header was
    there, the Prefer header, the status answered); GET /_test/stats returns them;
  - GET /_test/jobs: the job manager's jobs, oldest first, in the shape of GET /jobs/{id}
    (without links; plus the result's mimetype), read through pygeoapi's manager;
  - POST /_test/fault {"method", "path_suffix", "status", "times", "after", "delay",
    "body"}: the next `times` matching requests answer `status` with a gateway-like
    HTML page; with "after": true the request first goes to pygeoapi (the job is
    created) and its answer is thrown away. POST /_test/fault {} clears the faults;
  - with --introspect: every request but /_test/* and /outputs/* needs
    `Authorization: Bearer <token>`, checked at each request by RFC 7662 token
    introspection (HTTP Basic client authentication); otherwise 401 with an OGC
    exception document and `WWW-Authenticate: Bearer`.
"""

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml
from werkzeug.middleware.shared_data import SharedDataMiddleware
from werkzeug.serving import make_server

HERE = Path(__file__).resolve().parent
OUTPUTS_PREFIX = '/outputs'
TEST_PREFIX = '/_test/'

PROCESSES = {
    'eodispatch-features': 'processes.features.FeaturesProcessor',
    'eodispatch-slow': 'processes.slow.SlowProcessor',
    'eodispatch-fail': 'processes.fail.FailProcessor',
    'eodispatch-sync-only': 'processes.sync_only.SyncOnlyProcessor',
    'eodispatch-raster': 'processes.raster.RasterProcessor',
    'eodispatch-stac': 'processes.stac.StacProcessor',
}

GATEWAY_PAGE = (
    '<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n'
    '<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n'
    '</body>\r\n</html>\r\n'
)

REASONS = {
    400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
    408: 'Request Timeout', 409: 'Conflict', 413: 'Payload Too Large',
    429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway',
    503: 'Service Unavailable', 504: 'Gateway Time-out',
}


def reason(status):
    return REASONS.get(status, 'Error')


def write_config(data, base_url, port):
    """The pygeoapi configuration (YAML) in DATA; returns its path."""
    outputs = data / 'outputs'
    results = data / 'job-results'
    outputs.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    jobs_db = data / 'jobs.db'
    resources = {}
    for pid, cls in PROCESSES.items():
        resources[pid] = {
            'type': 'process',
            'processor': {
                'name': cls,
                # Our processes' own settings (pygeoapi passes the whole dict).
                'base_url': base_url,
                'outputs_dir': str(outputs),
                'outputs_url': f'{base_url}{OUTPUTS_PREFIX}',
                'jobs_db': str(jobs_db),
            },
        }
    config = {
        'server': {
            'bind': {'host': '127.0.0.1', 'port': port},
            'url': base_url,
            'mimetype': 'application/json; charset=UTF-8',
            'encoding': 'utf-8',
            'languages': ['en-US'],
            'cors': False,
            'pretty_print': True,
            'map': {
                'url': 'https://tile.openstreetmap.org/{z}/{x}/{y}.png',
                'attribution': 'OpenStreetMap',
            },
            'manager': {
                'name': 'TinyDB',
                'connection': str(jobs_db),
                'output_dir': str(results),
            },
        },
        'logging': {
            'level': os.environ.get('OGC_LOG_LEVEL', 'INFO'),
            'logfile': str(data / 'pygeoapi.log'),
        },
        'metadata': {
            'identification': {
                'title': 'eodispatch test OGC API - Processes server',
                'description': 'pygeoapi with the eodispatch test processes',
                'keywords': ['eodispatch', 'test'],
                'keywords_type': 'theme',
                'terms_of_service': 'https://creativecommons.org/licenses/by/4.0/',
                'url': 'https://example.org/eodispatch',
            },
            'license': {
                'name': 'CC-BY 4.0 license',
                'url': 'https://creativecommons.org/licenses/by/4.0/',
            },
            'provider': {'name': 'eodispatch tests', 'url': 'https://example.org'},
            'contact': {'name': 'eodispatch tests', 'email': 'tests@example.org'},
        },
        'resources': resources,
    }
    path = data / 'pygeoapi-config.yml'
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Plumbing:
    """The test middleware around pygeoapi's WSGI app (see the module doc)."""

    def __init__(self, app, data, introspect=None, client_id=None, client_secret=None):
        self.app = app
        self.data = data
        self.introspect = introspect
        self.client_id = client_id or ''
        self.client_secret = client_secret or ''
        self.lock = threading.Lock()
        self.requests = []
        self.faults = []

    # ---- the WSGI entry -----------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        record = {
            'method': environ.get('REQUEST_METHOD', ''),
            'path': path,
            'query': environ.get('QUERY_STRING', ''),
            'authorization': 'HTTP_AUTHORIZATION' in environ,
            'prefer': environ.get('HTTP_PREFER'),
            'status': None,
            't': time.time(),
        }
        if path.startswith(TEST_PREFIX):
            return self.control(environ, start_response, path)

        def recording(status, headers, exc_info=None):
            record['status'] = int(status.split(' ', 1)[0])
            # werkzeug's static files come with their own Date (the server adds one).
            headers = [(k, v) for k, v in headers if k.lower() != 'date']
            return start_response(status, headers, exc_info)

        with self.lock:
            self.requests.append(record)

        if self.introspect and not path.startswith(OUTPUTS_PREFIX + '/'):
            denied = self.check_bearer(environ, record)
            if denied is not None:
                return denied(recording)

        fault = self.take_fault(record['method'], path)
        if fault is None:
            return self.app(environ, recording)
        record['fault'] = True
        if fault.get('delay'):
            time.sleep(float(fault['delay']))
        if fault.get('after'):
            # The backend does the work; the gateway's answer replaces its answer.
            def discard(status, headers, exc_info=None):
                record['upstream_status'] = int(status.split(' ', 1)[0])
                return lambda _data: None
            body = self.app(environ, discard)
            try:
                for _ in body:
                    pass
            finally:
                if hasattr(body, 'close'):
                    body.close()
        status = int(fault.get('status', 502))
        page = fault.get('body')
        if page is None:
            page = GATEWAY_PAGE.format(status=status, reason=reason(status))
        payload = page.encode()
        recording(f'{status} {reason(status)}', [
            ('Content-Type', fault.get('content_type', 'text/html')),
            ('Content-Length', str(len(payload))),
        ])
        return [payload]

    # ---- faults -------------------------------------------------------------------
    def take_fault(self, method, path):
        with self.lock:
            for f in self.faults:
                if f['times'] <= 0:
                    continue
                if f.get('method') and f['method'].upper() != method.upper():
                    continue
                if f.get('path_suffix') and not path.endswith(f['path_suffix']):
                    continue
                f['times'] -= 1
                return dict(f)
        return None

    # ---- bearer tokens ------------------------------------------------------------
    def check_bearer(self, environ, record):
        """None when the bearer token is active; else a function answering 401 (or
        503 when the identity provider cannot be asked)."""
        header = environ.get('HTTP_AUTHORIZATION', '')
        scheme, _, token = header.partition(' ')
        token = token.strip()
        if scheme.lower() != 'bearer' or not token:
            record['auth'] = 'missing'
            return self.unauthorized('Missing bearer token (Authorization: Bearer <token>).')
        form = urllib.parse.urlencode({'token': token}).encode()
        basic = base64.b64encode(f'{self.client_id}:{self.client_secret}'.encode()).decode()
        req = urllib.request.Request(self.introspect, data=form, method='POST', headers={
            'Authorization': f'Basic {basic}',
            'Content-Type': 'application/x-www-form-urlencoded',
            'Accept': 'application/json',
        })
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                info = json.load(resp)
        except urllib.error.HTTPError as err:
            info = {}
            record['introspection_status'] = err.code
        except (OSError, ValueError) as err:
            record['auth'] = 'provider-unreachable'
            return self.exception(503, 'service-unavailable', 'Service Unavailable',
                                  f'The identity provider could not be reached: {err}')
        exp = info.get('exp')
        if info.get('active') is True and (not isinstance(exp, (int, float)) or exp > time.time()):
            record['auth'] = 'active'
            return None
        record['auth'] = 'inactive'
        return self.unauthorized('The bearer token is not active (expired, revoked or unknown).',
                                 'Bearer error="invalid_token"')

    def unauthorized(self, detail, challenge='Bearer'):
        return self.exception(401, 'unauthorized', 'Unauthorized', detail,
                              [('WWW-Authenticate', challenge)])

    @staticmethod
    def exception(status, type_, title, detail, extra=()):
        body = json.dumps({
            'type': f'http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/{type_}',
            'title': title,
            'status': status,
            'detail': detail,
        }).encode()
        headers = [('Content-Type', 'application/json'),
                   ('Content-Length', str(len(body)))] + list(extra)

        def answer(start_response):
            start_response(f'{status} {title}', headers)
            return [body]
        return answer

    # ---- /_test/ ------------------------------------------------------------------
    def control(self, environ, start_response, path):
        method = environ.get('REQUEST_METHOD', '')
        if path == '/_test/stats' and method == 'GET':
            with self.lock:
                doc = {
                    'requests': [dict(r) for r in self.requests],
                    'faults': [dict(f) for f in self.faults if f['times'] > 0],
                }
            doc['slow_jobs'] = self.slow_jobs()
            return self.json(start_response, 200, doc)
        if path == '/_test/jobs' and method == 'GET':
            return self.json(start_response, 200, {'jobs': self.jobs()})
        if path == '/_test/fault' and method == 'POST':
            try:
                length = int(environ.get('CONTENT_LENGTH') or 0)
                spec = json.loads(environ['wsgi.input'].read(length) or b'{}')
                if not isinstance(spec, dict):
                    raise ValueError('a JSON object is expected')
                if spec:
                    if not isinstance(spec.get('status'), int):
                        raise ValueError('"status" (an integer) is required')
                    spec.setdefault('times', 1)
                    spec.setdefault('after', False)
            except (ValueError, KeyError) as err:
                return self.json(start_response, 400, {'error': str(err)})
            with self.lock:
                if spec:
                    self.faults.append(spec)
                else:
                    self.faults.clear()
                pending = [dict(f) for f in self.faults if f['times'] > 0]
            return self.json(start_response, 200, {'faults': pending})
        if path == '/_test/reset' and method == 'POST':
            with self.lock:
                self.requests.clear()
                self.faults.clear()
            return self.json(start_response, 200, {})
        return self.json(start_response, 404, {'error': f'no test route {method} {path}'})

    @staticmethod
    def jobs():
        from pygeoapi.flask_app import api_
        out = []
        for j in api_.manager.get_jobs()['jobs']:
            out.append({
                'type': j.get('type', 'process'),
                'jobID': j.get('identifier'),
                'processID': j.get('process_id'),
                'status': j.get('status'),
                'message': j.get('message'),
                'progress': j.get('progress'),
                'created': j.get('created'),
                'started': j.get('started'),
                'finished': j.get('finished'),
                'updated': j.get('updated'),
                'mimetype': j.get('mimetype'),
            })
        return out

    def slow_jobs(self):
        out = {}
        folder = self.data / 'slow'
        if folder.is_dir():
            for f in folder.glob('*.json'):
                try:
                    out[f.stem] = json.loads(f.read_text())
                except (OSError, ValueError):
                    pass
        return out

    @staticmethod
    def json(start_response, status, doc):
        body = json.dumps(doc).encode()
        start_response(f'{status} {reason(status) if status != 200 else "OK"}', [
            ('Content-Type', 'application/json'),
            ('Content-Length', str(len(body))),
        ])
        return [body]


class Late:
    """A WSGI app set once the socket is bound (pygeoapi must know the port first)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--data', required=True, help='folder for the config, jobs and outputs')
    ap.add_argument('--public-url', help='the URL clients use (a forwarder in front); '
                    'default http://127.0.0.1:PORT')
    ap.add_argument('--introspect', help='RFC 7662 token introspection URL')
    ap.add_argument('--client-id', help='client id for introspection (HTTP Basic)')
    ap.add_argument('--client-secret', help='client secret for introspection')
    args = ap.parse_args()

    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)

    late = Late()
    server = make_server('127.0.0.1', args.port, late, threaded=True)
    port = server.server_port
    own_url = f'http://127.0.0.1:{port}'
    base_url = (args.public_url or own_url).rstrip('/')

    config = write_config(data, base_url, port)
    openapi = data / 'pygeoapi-openapi.yml'
    os.environ['PYGEOAPI_CONFIG'] = str(config)
    os.environ['PYGEOAPI_OPENAPI'] = str(openapi)
    sys.path.insert(0, str(HERE))

    from pygeoapi.openapi import generate_openapi_document
    openapi.write_text(generate_openapi_document(config, 'yaml'))

    from pygeoapi.flask_app import APP  # reads both files at import

    probe = APP.test_client().get('/conformance?f=json')
    if probe.status_code != 200:
        sys.exit(f'pygeoapi does not answer /conformance: {probe.status_code} {probe.data[:300]}')

    outputs = SharedDataMiddleware(APP, {OUTPUTS_PREFIX: str(data / 'outputs')})
    late.app = Plumbing(outputs, data, args.introspect, args.client_id, args.client_secret)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f'{own_url}/_test/stats', timeout=5) as r:
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
