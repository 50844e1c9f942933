"""eodispatch-slow: sleeps ``seconds`` in steps of 0.1 s and returns
``{"slept": seconds}``.

pygeoapi 0.21 has no way to stop a running job: ``DELETE /jobs/{id}`` removes the job
record (and its result file) while the job's thread goes on. This process therefore
asks the job manager (pygeoapi's own TinyDBManager on the server's job file) between
steps whether its job still exists, and stops as soon as it is gone: the process's
own doing, not pygeoapi's. What it did is written to ``DIR/slow/<job id>.json``
(``{"state": "running" | "done" | "stopped", "slept": s}``), which
``GET /_test/stats`` reports as ``slow_jobs``.

pygeoapi itself never sets a job ``running``: it stays ``accepted`` (progress 5) until
it ends. With the input ``progress: true`` this process updates its own job record
through the manager each step (``status: running``, ``progress`` 10..90, ``message``),
as a process that reports progress would.
"""

import json
import os
import time

from pygeoapi.process.base import JobNotFoundError
from pygeoapi.process.manager.tinydb_ import TinyDBManager
from pygeoapi.util import get_current_datetime

from .common import TestProcessor, bad_input, number

PROCESS_METADATA = {
    'version': '1.0.0',
    'id': 'eodispatch-slow',
    'title': 'Sleep',
    'description': 'Sleeps for the given number of seconds, then returns how long it '
                   'slept. Stops early when its job is dismissed.',
    'jobControlOptions': ['sync-execute', 'async-execute'],
    'outputTransmission': ['value'],
    'keywords': ['eodispatch', 'test'],
    'links': [],
    'inputs': {
        'seconds': {
            'title': 'Seconds',
            'description': 'How long to sleep.',
            'schema': {'type': 'number', 'minimum': 0, 'maximum': 3600, 'default': 5},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
        'progress': {
            'title': 'Report progress',
            'description': 'Set the job `running` and update its progress while sleeping '
                           '(pygeoapi itself leaves a job `accepted` until it ends).',
            'schema': {'type': 'boolean', 'default': False},
            'minOccurs': 0,
            'maxOccurs': 1,
        },
    },
    'outputs': {
        'slept': {
            'title': 'Slept',
            'description': 'The seconds slept, as `{"slept": seconds}`.',
            'schema': {
                'type': 'object',
                'contentMediaType': 'application/json',
                'properties': {'slept': {'type': 'number'}},
            },
        },
    },
    'example': {'inputs': {'seconds': 2}},
}

STEP = 0.1


class SlowProcessor(TestProcessor):
    def __init__(self, processor_def):
        super().__init__(processor_def, PROCESS_METADATA)

    def _state_file(self):
        d = self.outputs_dir.parent / 'slow'
        d.mkdir(parents=True, exist_ok=True)
        return d / f'{self.job_id}.json'

    def _record(self, state, slept):
        if not self.job_id:
            return
        path = self._state_file()
        tmp = path.with_suffix('.part')
        tmp.write_text(json.dumps({'state': state, 'slept': round(slept, 3)}))
        os.replace(tmp, path)

    def _manager(self):
        if not self.jobs_db or not self.job_id:
            return None
        return TinyDBManager({'name': 'TinyDB', 'connection': self.jobs_db,
                              'output_dir': None})

    @staticmethod
    def _job_gone(manager, job_id):
        try:
            manager.get_job(job_id)
        except JobNotFoundError:
            return True
        return False

    def execute(self, data, outputs=None):
        data = data or {}
        seconds = number(data.get('seconds', 5), 'seconds', 0, 3600)
        report = data.get('progress', False)
        if not isinstance(report, bool):
            raise bad_input("input 'progress' must be true or false")
        manager = self._manager()
        start = time.monotonic()
        self._record('running', 0)
        last_report = -1.0
        while True:
            slept = time.monotonic() - start
            if slept >= seconds:
                break
            if manager is not None and self._job_gone(manager, self.job_id):
                self._record('stopped', slept)
                # pygeoapi has already answered the DELETE; what is returned here goes
                # nowhere (the job record is gone).
                return 'application/json', {'slept': slept, 'dismissed': True}
            if report and manager is not None and slept - last_report >= 0.25:
                last_report = slept
                manager.update_job(self.job_id, {
                    'status': 'running',
                    'progress': 10 + int(80 * slept / seconds),
                    'message': f'slept {slept:.1f} of {seconds:g} s',
                    'updated': get_current_datetime(),
                })
            time.sleep(min(STEP, seconds - slept))
        self._record('done', seconds)
        return 'application/json', {'slept': seconds}

    def __repr__(self):
        return f'<SlowProcessor> {self.name}'
