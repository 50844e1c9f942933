"""eodispatch-stac: two GeoTIFFs (the west and east halves of the bounding box) and
a STAC 1.0 Collection with one Item per file, written into the server's static
outputs folder. ``form: collection`` returns a link to the collection;
``form: features`` returns the Items inline as a GeoJSON FeatureCollection whose
features link ``rel: collection`` to it (how the APEx Dispatch API reads OGC
results)."""

import json
import os

from .common import BBOX_SCHEMA, TestProcessor, bad_input, bbox, require, write_geotiff

STAC_VERSION = '1.0.0'
TIFF_TYPE = 'image/tiff; application=geotiff'
DATETIME = '2023-05-01T00:00:00Z'

PROCESS_METADATA = {
    'version': '1.0.0',
    'id': 'eodispatch-stac',
    'title': 'A STAC collection of two GeoTIFFs',
    'description': 'Writes two GeoTIFFs covering the bounding box (west and east halves) '
                   'and a STAC 1.0 Collection of them; returns a link to the collection, '
                   'or the STAC Items inline as a GeoJSON FeatureCollection.',
    'jobControlOptions': ['sync-execute', 'async-execute'],
    'outputTransmission': ['value', 'reference'],
    'keywords': ['eodispatch', 'test', 'stac'],
    'links': [],
    'inputs': {
        'bbox': {
            'title': 'Bounding box',
            'description': 'Extent of the data, longitude/latitude (CRS84).',
            'schema': BBOX_SCHEMA,
            'minOccurs': 1,
            'maxOccurs': 1,
        },
        'form': {
            'title': 'Form of the answer',
            'description': '`collection`: a link to the STAC Collection; `features`: the '
                           'STAC Items inline as a GeoJSON FeatureCollection.',
            'schema': {'type': 'string', 'enum': ['collection', 'features'],
                       'default': 'collection'},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
    },
    'outputs': {
        'stac': {
            'title': 'STAC',
            'description': 'The STAC Collection by reference (`{"stac": {"href", "type"}}`), '
                           'or a GeoJSON FeatureCollection of STAC Items.',
            'schema': {
                'oneOf': [
                    {'type': 'object', 'contentMediaType': 'application/json'},
                    {'type': 'object', 'contentMediaType': 'application/geo+json'},
                ],
            },
        },
    },
    'example': {
        'inputs': {
            'bbox': {'bbox': [16.342, 47.962, 16.414, 48.008],
                     'crs': 'http://www.opengis.net/def/crs/OGC/1.3/CRS84'},
            'form': 'collection',
        },
    },
}


def _write_json(path, doc):
    tmp = path.with_name(path.name + '.part')
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def _polygon(w, s, e, n):
    return {'type': 'Polygon', 'coordinates': [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


class StacProcessor(TestProcessor):
    def __init__(self, processor_def):
        super().__init__(processor_def, PROCESS_METADATA)

    def execute(self, data, outputs=None):
        w, s, e, n = bbox(require(data, 'bbox'))
        form = data.get('form', 'collection')
        if form not in ('collection', 'features'):
            raise bad_input(f"input 'form' must be one of collection, features; got {form!r}")
        folder, url = self.new_output_dir('stac')
        collection_id = folder.name
        collection_href = f'{url}/collection.json'
        mid = (w + e) / 2
        items = []
        for i, (name, (a, b)) in enumerate((('west', (w, mid)), ('east', (mid, e)))):
            tif = f'{name}.tif'
            write_geotiff(folder / tif, a, s, b, n, 32, 32, seed=i)
            item_href = f'{url}/{name}.json'
            item = {
                'type': 'Feature',
                'stac_version': STAC_VERSION,
                'stac_extensions': [],
                'id': f'{collection_id}-{name}',
                'collection': collection_id,
                'bbox': [a, s, b, n],
                'geometry': _polygon(a, s, b, n),
                'properties': {'datetime': DATETIME},
                'assets': {
                    'data': {
                        'href': f'{url}/{tif}',
                        'type': TIFF_TYPE,
                        'title': f'{name} half',
                        'roles': ['data'],
                    },
                },
                'links': [
                    {'rel': 'self', 'href': item_href, 'type': 'application/geo+json'},
                    {'rel': 'collection', 'href': collection_href,
                     'type': 'application/json'},
                    {'rel': 'parent', 'href': collection_href, 'type': 'application/json'},
                    {'rel': 'root', 'href': collection_href, 'type': 'application/json'},
                ],
            }
            _write_json(folder / f'{name}.json', item)
            items.append((item_href, item))
        collection = {
            'type': 'Collection',
            'stac_version': STAC_VERSION,
            'stac_extensions': [],
            'id': collection_id,
            'title': 'eodispatch-stac result',
            'description': 'Two GeoTIFFs covering the west and east halves of the box.',
            'license': 'proprietary',
            'extent': {
                'spatial': {'bbox': [[w, s, e, n]]},
                'temporal': {'interval': [[DATETIME, DATETIME]]},
            },
            'links': [
                {'rel': 'self', 'href': collection_href, 'type': 'application/json'},
                {'rel': 'root', 'href': collection_href, 'type': 'application/json'},
            ] + [
                {'rel': 'item', 'href': href, 'type': 'application/geo+json'}
                for href, _ in items
            ],
        }
        _write_json(folder / 'collection.json', collection)
        if form == 'features':
            return 'application/geo+json', {
                'type': 'FeatureCollection',
                'features': [item for _, item in items],
            }
        return 'application/json', {
            'stac': {'href': collection_href, 'type': 'application/json'},
        }

    def __repr__(self):
        return f'<StacProcessor> {self.name}'
