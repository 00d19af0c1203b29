-- upgrun.ansible.callback — the source of the Ansible stdout callback plugin
-- `upgrun_events` that upgrun.ansible writes to a private directory for each
-- ansible-playbook run (ansible-core in Debian has no JSON callback; the
-- ansible.posix.json one is in the separate `ansible` collection package and
-- prints only at the end). It prints one line per event as it happens,
-- "\30upgrun " followed by a JSON object, flushed at once, so upgrun times
-- every task itself and keeps the results of a run that is killed:
--
--   {"ev":"playbook","file":...}          {"ev":"play","name":...}
--   {"ev":"task","id":,"name":,"action":,"path":,"handler":bool}
--   {"ev":"result","task":id,"host":,"status":"ok|changed|failed|skipped|unreachable",
--    "ignored":bool,"msg":,"rc":,"stderr":,"stdout":}   (outputs: their last 2000 bytes)
--   {"ev":"no_hosts","remaining":bool}    {"ev":"stats","hosts":{host:{ok=,changed=,...}}}
--
-- A task with no_log gets Ansible's censored result (no msg, no output).
-- Other plugins' output (enabled callbacks that print) passes through as
-- plain lines, which upgrun keeps only as context for errors.
return [==[
# upgrun_events: written by upgrun (lualib/upgrun/ansible/callback.lua).
from __future__ import annotations

import json
import sys

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: upgrun_events
    type: stdout
    short_description: one JSON line per task and host result, for upgrun
    description: Prints each event as a line starting with the byte 0x1e and "upgrun ".
"""

TAIL = 2000


def _tail(v):
    if v is None:
        return None
    if not isinstance(v, str):
        v = str(v)
    return v[-TAIL:]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "upgrun_events"

    def _emit(self, **ev):
        sys.stdout.write("\x1eupgrun " + json.dumps(ev, default=str) + "\n")
        sys.stdout.flush()

    def v2_playbook_on_start(self, playbook):
        self._emit(ev="playbook", file=getattr(playbook, "_file_name", None))

    def v2_playbook_on_play_start(self, play):
        self._emit(ev="play", name=play.get_name().strip())

    def _task(self, task, handler):
        self._emit(ev="task", id=str(task._uuid), name=task.get_name().strip(), action=task.action,
                   path=task.get_path(), handler=handler)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task(task, False)

    def v2_playbook_on_handler_task_start(self, task):
        self._task(task, True)

    def _result(self, result, status, ignored=False):
        r = result._result if isinstance(result._result, dict) else {}
        if status == "ok" and r.get("changed"):
            status = "changed"
        msg = r.get("msg")
        if msg is None and r.get("censored"):
            msg = r.get("censored")
        self._emit(ev="result", task=str(result._task._uuid), host=result._host.get_name(), status=status,
                   ignored=ignored, msg=_tail(msg), rc=r.get("rc"),
                   stderr=_tail(r.get("stderr") or r.get("module_stderr")),
                   stdout=_tail(r.get("stdout") or r.get("module_stdout")))

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed", ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_no_hosts_matched(self):
        self._emit(ev="no_hosts", remaining=False)

    def v2_playbook_on_no_hosts_remaining(self):
        self._emit(ev="no_hosts", remaining=True)

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for h in sorted(stats.processed.keys()):
            hosts[h] = stats.summarize(h)
        self._emit(ev="stats", hosts=hosts)
]==]
