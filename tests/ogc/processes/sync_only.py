"""eodispatch-sync-only: one GeoJSON Point at (lon, lat); synchronous execution
only (its metadata lists sync-execute alone)."""

from .common import TestProcessor, number, require

PROCESS_METADATA = {
    'version': '1.0.0',
    'id': 'eodispatch-sync-only',
    'title': 'A point (synchronous only)',
    'description': 'Returns a GeoJSON FeatureCollection with one Point at (lon, lat). '
                   'Runs synchronously only.',
    'jobControlOptions': ['sync-execute'],
    'outputTransmission': ['value'],
    'keywords': ['eodispatch', 'test', 'geojson'],
    'links': [],
    'inputs': {
        'lon': {
            'title': 'Longitude',
            'description': 'Degrees east (WGS 84).',
            'schema': {'type': 'number', 'format': 'double', 'minimum': -180, 'maximum': 180},
            'minOccurs': 1,
            'maxOccurs': 1,
        },
        'lat': {
            'title': 'Latitude',
            'description': 'Degrees north (WGS 84).',
            'schema': {'type': 'number', 'format': 'double', 'minimum': -90, 'maximum': 90},
            'minOccurs': 1,
            'maxOccurs': 1,
        },
    },
    'outputs': {
        'point': {
            'title': 'Point',
            'description': 'The point, as GeoJSON.',
            'schema': {'type': 'object', 'contentMediaType': 'application/geo+json'},
        },
    },
    'example': {'inputs': {'lon': 16.37, 'lat': 48.2}},
}


class SyncOnlyProcessor(TestProcessor):
    def __init__(self, processor_def):
        super().__init__(processor_def, PROCESS_METADATA)

    def execute(self, data, outputs=None):
        lon = number(require(data, 'lon'), 'lon', -180, 180)
        lat = number(require(data, 'lat'), 'lat', -90, 90)
        return 'application/geo+json', {
            'type': 'FeatureCollection',
            'features': [{
                'type': 'Feature',
                'id': 0,
                'geometry': {'type': 'Point', 'coordinates': [lon, lat]},
                'properties': {'lon': lon, 'lat': lat},
            }],
        }

    def __repr__(self):
        return f'<SyncOnlyProcessor> {self.name}'
