"""Work-time stage: outside the configured hours (and optionally at weekends) the bot stays silent."""
from __future__ import annotations

import datetime
from typing import Callable

from huixiangdou.config import WorkTimeConfig
from huixiangdou.service.worker.session import ErrorCode, Session


class WorkTime:
    name = 'work_time'

    def __init__(self, config: WorkTimeConfig, now: Callable[[], datetime.datetime] = datetime.datetime.now):
        self.start = datetime.time.fromisoformat(config.start)
        self.end = datetime.time.fromisoformat(config.end)
        self.enabled = bool(config.enable)
        self.has_weekday = bool(config.has_weekday)
        self.now = now

    def is_work_time(self) -> bool:
        now = self.now()
        if self.has_weekday and now.weekday() >= 5:
            return False
        t = now.time()
        if self.start <= self.end:
            return self.start <= t <= self.end
        return t >= self.start or t <= self.end  # a window across midnight

    async def run(self, session: Session) -> None:
        if self.enabled and not self.is_work_time():
            session.finish(ErrorCode.NOT_WORK_TIME)
