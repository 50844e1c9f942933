"""eodispatch-fail: always fails with pygeoapi's ProcessorExecuteError."""

from pygeoapi.process.base import ProcessorExecuteError

from .common import TestProcessor

PROCESS_METADATA = {
    'version': '1.0.0',
    'id': 'eodispatch-fail',
    'title': 'Always fails',
    'description': 'Fails on every execution, with a message that contains the reason.',
    'jobControlOptions': ['sync-execute', 'async-execute'],
    'outputTransmission': ['value'],
    'keywords': ['eodispatch', 'test'],
    'links': [],
    'inputs': {
        'reason': {
            'title': 'Reason',
            'description': 'Put into the error message.',
            'schema': {'type': 'string', 'default': 'this process fails on purpose'},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
    },
    'outputs': {
        'nothing': {
            'title': 'Nothing',
            'description': 'Never produced.',
            'schema': {'type': 'object', 'contentMediaType': 'application/json'},
        },
    },
    'example': {'inputs': {'reason': 'testing'}},
}


class FailProcessor(TestProcessor):
    def __init__(self, processor_def):
        super().__init__(processor_def, PROCESS_METADATA)

    def execute(self, data, outputs=None):
        reason = (data or {}).get('reason') or 'this process fails on purpose'
        msg = f'eodispatch-fail failed: {reason}'
        raise ProcessorExecuteError(msg, user_msg=msg)

    def __repr__(self):
        return f'<FailProcessor> {self.name}'
