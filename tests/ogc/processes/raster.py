"""eodispatch-raster: a single-band GeoTIFF (EPSG:4326) covering the bounding box,
written into the server's static outputs folder and returned by reference."""

from .common import BBOX_SCHEMA_OGC, TestProcessor, bbox, number, require, write_geotiff

TIFF_TYPE = 'image/tiff; application=geotiff'

PROCESS_METADATA = {
    'version': '1.0.0',
    'id': 'eodispatch-raster',
    'title': 'A GeoTIFF of a bounding box',
    'description': 'Writes a single-band Byte GeoTIFF in EPSG:4326 covering the bounding '
                   'box and returns a link to it.',
    'jobControlOptions': ['sync-execute', 'async-execute'],
    'outputTransmission': ['reference'],
    'keywords': ['eodispatch', 'test', 'geotiff'],
    'links': [],
    'inputs': {
        'bbox': {
            'title': 'Bounding box',
            'description': 'Extent of the raster, longitude/latitude (CRS84).',
            'schema': BBOX_SCHEMA_OGC,
            'minOccurs': 1,
            'maxOccurs': 1,
        },
        'size': {
            'title': 'Size',
            'description': 'Width and height of the raster, in pixels.',
            'schema': {'type': 'integer', 'minimum': 8, 'maximum': 1024, 'default': 64},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
    },
    'outputs': {
        'raster': {
            'title': 'Raster',
            'description': 'The GeoTIFF, by reference: `{"href": ..., "type": ...}`.',
            'schema': {'type': 'string', 'contentMediaType': TIFF_TYPE},
        },
    },
    'example': {
        'inputs': {
            'bbox': {'bbox': [16.342, 47.962, 16.414, 48.008],
                     'crs': 'http://www.opengis.net/def/crs/OGC/1.3/CRS84'},
            'size': 32,
        },
    },
}


class RasterProcessor(TestProcessor):
    def __init__(self, processor_def):
        super().__init__(processor_def, PROCESS_METADATA)

    def execute(self, data, outputs=None):
        w, s, e, n = bbox(require(data, 'bbox'))
        size = number(data.get('size', 64), 'size', 8, 1024, integer=True)
        folder, url = self.new_output_dir('raster')
        write_geotiff(folder / 'raster.tif', w, s, e, n, size, size)
        return 'application/json', {
            'raster': {'href': f'{url}/raster.tif', 'type': TIFF_TYPE},
        }

    def __repr__(self):
        return f'<RasterProcessor> {self.name}'
