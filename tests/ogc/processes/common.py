"""Helpers shared by the test processes: input checks with clear errors, bounding
boxes, the processor definition's server settings, GeoTIFF writing."""

import copy
import json
import os
import re
import uuid
from pathlib import Path

from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

CRS84 = 'http://www.opengis.net/def/crs/OGC/1.3/CRS84'
#: CRS URIs accepted as longitude/latitude on WGS 84.
CRS84_ALIASES = {
    CRS84,
    'https://www.opengis.net/def/crs/OGC/1.3/CRS84',
    'http://www.opengis.net/def/crs/OGC/0/CRS84',
    'urn:ogc:def:crs:OGC:1.3:CRS84',
    'CRS84',
    'OGC:CRS84',
    'EPSG:4326',
    'http://www.opengis.net/def/crs/EPSG/0/4326',
    'https://www.opengis.net/def/crs/EPSG/0/4326',
}

#: The OGC schema of a bounding box value (processes-core/bbox.yaml).
OGC_BBOX_REF = ('https://raw.githubusercontent.com/opengeospatial/ogcapi-processes/'
                'master/openapi/schemas/processes-core/bbox.yaml')

#: An input schema for a bounding box written out (pygeoapi's own style).
BBOX_SCHEMA = {
    'type': 'object',
    'format': 'ogc-bbox',
    'required': ['bbox'],
    'properties': {
        'bbox': {
            'type': 'array',
            'oneOf': [
                {'minItems': 4, 'maxItems': 4},
                {'minItems': 6, 'maxItems': 6},
            ],
            'items': {'type': 'number'},
        },
        'crs': {
            'type': 'string',
            'format': 'uri',
            'default': CRS84,
        },
    },
}

#: The same, in the OGC style: a format plus a reference to the OGC schema.
BBOX_SCHEMA_OGC = {'allOf': [{'format': 'ogc-bbox'}, {'$ref': OGC_BBOX_REF}]}


def bad_input(msg):
    """The error a process raises for a wrong input (pygeoapi turns it into a
    failed job; see tests/ogc/README.md)."""
    return ProcessorExecuteError(msg, user_msg=msg)


class TestProcessor(BaseProcessor):
    """A processor with its own copy of the metadata (pygeoapi's OpenAPI generator
    pops ``contentMediaType`` from the first output's schema in place) and the
    server's settings from its definition."""

    def __init__(self, processor_def, metadata):
        super().__init__(processor_def, copy.deepcopy(metadata))
        self.base_url = processor_def.get('base_url', '').rstrip('/')
        self.outputs_dir = Path(processor_def.get('outputs_dir') or '.')
        self.outputs_url = processor_def.get('outputs_url', '').rstrip('/')
        self.jobs_db = processor_def.get('jobs_db')
        self.job_id = None

    def set_job_id(self, job_id):
        self.job_id = job_id

    def new_output_dir(self, prefix):
        """A fresh folder under the static outputs: (path, its URL)."""
        name = f'{prefix}-{self.job_id or uuid.uuid4()}'
        path = self.outputs_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path, f'{self.outputs_url}/{name}'


def require(data, name):
    if not isinstance(data, dict):
        raise bad_input('the inputs must be a JSON object')
    if name not in data or data[name] is None:
        raise bad_input(f'missing required input {name!r}')
    return data[name]


def number(value, name, lo=None, hi=None, integer=False):
    """A number input within [lo, hi]."""
    if isinstance(value, dict) and 'value' in value:  # {"value": ..} qualified
        value = value['value']
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_input(f'input {name!r} must be a number, got {json.dumps(value)}')
    if integer and not float(value).is_integer():
        raise bad_input(f'input {name!r} must be an integer, got {value}')
    if lo is not None and value < lo:
        raise bad_input(f'input {name!r} must be at least {lo}, got {value}')
    if hi is not None and value > hi:
        raise bad_input(f'input {name!r} must be at most {hi}, got {value}')
    return int(value) if integer else float(value)


def bbox(value, name='bbox'):
    """An ``ogc-bbox`` value ``{"bbox": [w, s, e, n] (or 6 numbers), "crs": ...}``
    in CRS84; returns (west, south, east, north)."""
    if isinstance(value, list):
        raise bad_input(f'input {name!r} must be an object {{"bbox": [w, s, e, n], "crs": ...}}, '
                        'not a bare array')
    if not isinstance(value, dict) or 'bbox' not in value:
        raise bad_input(f'input {name!r} must be an object {{"bbox": [w, s, e, n], "crs": ...}}')
    coords = value['bbox']
    if not isinstance(coords, list) or len(coords) not in (4, 6) or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords):
        raise bad_input(f'input {name!r}: "bbox" must be an array of 4 or 6 numbers')
    crs = value.get('crs', CRS84)
    if crs not in CRS84_ALIASES:
        raise bad_input(f'input {name!r}: only CRS84 is supported, got crs {crs!r}')
    if len(coords) == 6:
        w, s, _, e, n, _ = coords
    else:
        w, s, e, n = coords
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise bad_input(f'input {name!r}: coordinates out of range: {coords}')
    if w >= e or s >= n:
        raise bad_input(f'input {name!r}: west must be less than east and south less '
                        f'than north, got {coords}')
    return float(w), float(s), float(e), float(n)


DATE_RE = re.compile(r'^\d{4}-\d{2}-\d{2}$')


def date(value, name):
    import datetime
    if not isinstance(value, str) or not DATE_RE.match(value):
        raise bad_input(f'input {name!r} must be a date YYYY-MM-DD, got {json.dumps(value)}')
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise bad_input(f'input {name!r}: {value} is not a date')
    return value


def write_geotiff(path, west, south, east, north, width, height, seed=0):
    """A single-band Byte GeoTIFF in EPSG:4326 covering the box, written with
    GDAL (rasterio's bundled GDAL): a gradient, so the data are not constant."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_bounds

    cols = np.arange(width, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)[:, None]
    data = (1 + (cols * 254.0 / max(width - 1, 1) + rows * 7.0 + seed * 31) % 255).astype('uint8')
    transform = from_bounds(west, south, east, north, width, height)
    tmp = Path(f'{path}.part')
    with rasterio.open(tmp, 'w', driver='GTiff', width=width, height=height, count=1,
                       dtype='uint8', crs='EPSG:4326', transform=transform,
                       nodata=0) as dst:
        dst.write(data, 1)
    os.replace(tmp, path)
