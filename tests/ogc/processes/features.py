"""eodispatch-features: a GeoJSON FeatureCollection of ``count`` features inside a
bounding box, each with the date, its index and the tags as properties."""

from .common import BBOX_SCHEMA, TestProcessor, bad_input, bbox, date, number, require

PROCESS_METADATA = {
    'version': '1.0.0',
    'id': 'eodispatch-features',
    'title': 'Features in a bounding box',
    'description': 'Returns a GeoJSON FeatureCollection of `count` features laid out '
                   'inside the bounding box (CRS84), each with the date, its index '
                   'and the tags as properties.',
    'jobControlOptions': ['sync-execute', 'async-execute'],
    'outputTransmission': ['value'],
    'keywords': ['eodispatch', 'test', 'geojson'],
    'links': [],
    'inputs': {
        'bbox': {
            'title': 'Bounding box',
            'description': 'Area of interest, longitude/latitude (CRS84).',
            'schema': BBOX_SCHEMA,
            'minOccurs': 1,
            'maxOccurs': 1,
        },
        'date': {
            'title': 'Date',
            'description': 'The date written into each feature.',
            'schema': {'type': 'string', 'format': 'date'},
            'minOccurs': 1,
            'maxOccurs': 1,
        },
        'count': {
            'title': 'Number of features',
            'description': 'How many features to return.',
            'schema': {'type': 'integer', 'minimum': 1, 'maximum': 50, 'default': 4},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
        'shape': {
            'title': 'Shape',
            'description': 'Geometry of each feature: a small square or a point.',
            'schema': {'type': 'string', 'enum': ['square', 'point'], 'default': 'square'},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
        'tags': {
            'title': 'Tags',
            'description': 'Strings copied into every feature.',
            'schema': {'type': 'array', 'items': {'type': 'string'}},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
    },
    'outputs': {
        'features': {
            'title': 'Features',
            'description': 'The features, as GeoJSON.',
            'schema': {
                'type': 'object',
                'contentMediaType': 'application/geo+json',
            },
        },
    },
    'example': {
        'inputs': {
            'bbox': {'bbox': [16.342, 47.962, 16.414, 48.008],
                     'crs': 'http://www.opengis.net/def/crs/OGC/1.3/CRS84'},
            'date': '2023-05-01',
            'count': 3,
        },
    },
}


def feature_collection(west, south, east, north, day, count, shape, tags):
    """``count`` features on a grid of cells inside the box."""
    cols = 1
    while cols * cols < count:
        cols += 1
    rows = (count + cols - 1) // cols
    dx = (east - west) / cols
    dy = (north - south) / rows
    features = []
    for i in range(count):
        c, r = i % cols, i // cols
        cx = west + (c + 0.5) * dx
        cy = south + (r + 0.5) * dy
        if shape == 'point':
            geom = {'type': 'Point', 'coordinates': [cx, cy]}
        else:
            hx, hy = dx / 4, dy / 4
            geom = {'type': 'Polygon', 'coordinates': [[
                [cx - hx, cy - hy], [cx + hx, cy - hy], [cx + hx, cy + hy],
                [cx - hx, cy + hy], [cx - hx, cy - hy]]]}
        features.append({
            'type': 'Feature',
            'id': i,
            'geometry': geom,
            'properties': {'date': day, 'index': i, 'tags': list(tags)},
        })
    return {'type': 'FeatureCollection', 'features': features}


class FeaturesProcessor(TestProcessor):
    def __init__(self, processor_def):
        super().__init__(processor_def, PROCESS_METADATA)

    def execute(self, data, outputs=None):
        w, s, e, n = bbox(require(data, 'bbox'))
        day = date(require(data, 'date'), 'date')
        count = number(data.get('count', 4), 'count', 1, 50, integer=True)
        shape = data.get('shape', 'square')
        if shape not in ('square', 'point'):
            raise bad_input(f"input 'shape' must be one of square, point; got {shape!r}")
        tags = data.get('tags', [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_input("input 'tags' must be an array of strings")
        return 'application/geo+json', feature_collection(w, s, e, n, day, count, shape, tags)

    def __repr__(self):
        return f'<FeaturesProcessor> {self.name}'
