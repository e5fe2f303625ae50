"""run_frontend: starts the frontend that `[frontend] type` names and serves until cancelled.

The one entry point main.py calls; building the worker is main.py's job, not this module's.
"""
from __future__ import annotations

from loguru import logger

from huixiangdou.config import Config
from huixiangdou.frontend.group_message import Responder


def check_frontend(config: Config) -> None:
    """Refuse at once what the frontend would refuse at start (FrontendError), before models load for minutes."""
    if config.frontend.type == 'wechat_personal':
        from huixiangdou.frontend.callback_server import require_protected
        from huixiangdou.frontend.wechat_personal import SECTION, WechatPersonalServer
        wp = config.frontend.wechat_personal
        require_protected(WechatPersonalServer.name, SECTION, wp.host, wp.token, wp.path)


async def run_frontend(config: Config, responder: Responder) -> None:
    """Run `config.frontend.type` with `responder` answering; `none` returns at once."""
    frontend = config.frontend
    kind = frontend.type
    if kind == 'none':
        logger.info('frontend type is "none": no chat frontend started')
        return
    # Imported lazily so `none` (and the other types) do not import what they do not use.
    from huixiangdou.frontend.message_images import ImageLimits
    images = ImageLimits.from_config(config)   # no downloads when [worker] ocr = 0
    if kind == 'lark':
        from huixiangdou.frontend.lark import run_lark_webhook
        await run_lark_webhook(frontend, responder)
    elif kind == 'lark_group':
        from huixiangdou.frontend.lark_group import run_lark_group
        # The inbox lives in the workdir: a crash loses no acknowledged message, a redelivery is answered once.
        await run_lark_group(frontend, responder, config.path(config.feature_store.work_dir), images)
    elif kind == 'wechat_personal':
        from huixiangdou.frontend.wechat_personal import run_wechat_personal
        await run_wechat_personal(frontend, responder, images, config.path(config.feature_store.work_dir))
    elif kind == 'wechat_wkteam':
        from huixiangdou.frontend.wechat_wkteam import run_wechat_wkteam
        history_path = config.path(config.feature_store.work_dir) / 'wkteam.sqlite'
        await run_wechat_wkteam(frontend, responder, history_path, images)
    else:  # config.py validates the type; this guards callers that build Config by hand
        raise ValueError(f'unknown frontend type {kind!r}')
