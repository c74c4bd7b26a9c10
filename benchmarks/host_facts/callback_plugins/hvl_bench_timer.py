# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark helper: write each task's wall time (start to result) as a JSON line."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: hvl_bench_timer
type: aggregate
short_description: Record per-task wall times for the benchmarks
description:
  - Appends one JSON line per task result (task name, host, seconds, ok) to the file named by
    the environment variable C(HVL_BENCH_TIMES).
requirements:
  - enable in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    """Time every task from its start to its result; the benchmark subtracts the floor."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hvl_bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("HVL_BENCH_TIMES")
        self._start: dict[str, float] = {}

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._start[task._uuid] = time.perf_counter()

    def _record(self, result, ok: bool) -> None:
        end = time.perf_counter()
        task = result._task
        start = self._start.get(task._uuid)
        if not self._path or start is None:
            return
        with open(self._path, "a") as f:
            f.write(json.dumps({"task": task.get_name(), "host": result._host.get_name(),
                                "seconds": end - start, "ok": ok}) + "\n")

    def v2_runner_on_ok(self, result) -> None:
        self._record(result, True)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._record(result, False)
