"""Group-chat frontends (Lark webhook, Lark group app, personal WeChat, wkteam) and their shared queue.

`run_frontend(config, responder)` is the entry point; the worker that answers lives in service/worker.
"""
from huixiangdou.frontend.group_message import GroupMessage, Outcome, OutcomeStatus, Responder
from huixiangdou.frontend.runner import run_frontend

__all__ = ['GroupMessage', 'Outcome', 'OutcomeStatus', 'Responder', 'run_frontend']
