# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  freeze_read_duration:
    description:
      - Seconds of C(mngdb_read_duration) (the drivers' poll interval) while the operation runs, so that
        its write freeze lasts about this long whatever the DBA's interval. The module lowers it on both
        nodes when it starts (each management database records the DBA's value in a comment on
        C(global_config)), waits before the freeze for what is left of one old interval (an online
        recovery's base copy usually covers it), freezes with this notice, and puts the DBA's value back
        after success, cancel, failure or SIGINT; a run after one that was killed puts it back at its end.
      - Not used when O(notice_wait) is given. At least C(1); C(mngdb_read_duration) of C(0) or less is
        refused (drivers that read it stop polling for good).
    type: int
    default: 1
  idle_wait_timeout:
    description:
      - Seconds the operation may wait, B(outside) the write freeze while the applications keep writing, for
        the source to be quiet enough to freeze (no transaction open longer than the notice time, as a batch job
        keeps one, and none of a session that made an earlier freeze give up). Progress names each session it waits for.
      - Inside the freeze, a transaction still open after the notice plus 0.3 s undoes the freeze at once and
        it is tried again later (at most 8 times), so no freeze lasts longer than the notice plus about 1 s.
        When this time runs out the operation fails, naming the sessions, with nothing changed.
    type: float
    default: 60
'''
