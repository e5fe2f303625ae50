"""Parse throughput (MB/s) per format on a generated >= 5 MB mixed Chinese/English corpus.

Baseline, measured in the same run on the same files: reading the bytes and decoding them as UTF-8
(the floor any parser pays). Prints MB/s per format, the total, and parse time / baseline time.

    python bench/bench_parse.py [--mb 7]
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import docx
import openpyxl
import pptx
import pymupdf

from huixiangdou.primitive.documents import parse_file, walk_repo

ZH = ('茴香豆是一个面向群聊的知识助手，它先判断问题是否与知识库相关，再检索文档并生成带引用的回答。'
      '配置文件 config.ini 中的 reject_throttle 决定拒答阈值，需要在建库后校准。')
EN = ('HuixiangDou answers technical questions in group chats. It rejects chatter, retrieves '
      'chunks with FAISS and BM25, and cites the source file of every answer. ')


def _paragraph(rng: random.Random) -> str:
    return (ZH if rng.random() < 0.6 else EN) * rng.randint(1, 4)


def _markdown(rng, size):
    parts, n = [], 0
    while n < size:
        part = (f'## 第 {len(parts)} 节 Section\n\n{_paragraph(rng)}\n\n'
                f'```python\n# comment\nprint({len(parts)})\n```\n\n')
        parts.append(part)
        n += len(part.encode())
    return ''.join(parts)


def _code(rng, size):
    parts, n = [], 0
    while n < size:
        part = f'def handler_{len(parts)}(x):\n    """{_paragraph(rng)[:80]}"""\n    return x * 2\n\n'
        parts.append(part)
        n += len(part.encode())
    return ''.join(parts)


def _csv(rng, size):
    rows, n = ['名称,价格,说明'], 0
    while n < size:
        row = f'产品{len(rows)},{rng.randint(1, 999)},{_paragraph(rng)[:60]}'
        rows.append(row)
        n += len(row.encode()) + 1
    return '\n'.join(rows)


def _html(rng, size):
    parts, n = ['<html><head><script>var a=1;</script></head><body><nav>首页</nav>'], 0
    while n < size:
        part = f'<h2>标题 {len(parts)}</h2><p>{_paragraph(rng)}</p><pre>pip install x</pre>'
        parts.append(part)
        n += len(part.encode())
    return ''.join(parts) + '</body></html>'


def build_corpus(root: Path, total_mb: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    text_mb = total_mb * 1024 * 1024
    # Text formats dominate a typical repodir; each file about 256 KB.
    shares = {'md': 0.4, 'txt': 0.15, 'py': 0.15, 'csv': 0.1, 'html': 0.1}
    per_file = 256 * 1024
    for suffix, share in shares.items():
        for i in range(max(1, int(text_mb * share / per_file))):
            path = root / suffix / f'doc_{i}.{suffix}'
            path.parent.mkdir(parents=True, exist_ok=True)
            if suffix == 'md':
                path.write_text(_markdown(rng, per_file), encoding='utf-8')
            elif suffix == 'txt':  # GBK, as Windows users save it
                path.write_bytes(_markdown(rng, per_file).encode('gb18030'))
            elif suffix == 'py':
                path.write_text(_code(rng, per_file), encoding='utf-8')
            elif suffix == 'csv':
                path.write_text(_csv(rng, per_file), encoding='utf-8')
            else:
                path.write_text(_html(rng, per_file), encoding='utf-8')
    office = root / 'office'
    office.mkdir()
    for i in range(4):
        d = docx.Document()
        for j in range(150):
            d.add_heading(f'章节 {j}', level=1 + j % 2)
            d.add_paragraph(_paragraph(rng))
        d.save(office / f'manual_{i}.docx')
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(['名称', '价格', '说明'])
        for j in range(3000):
            ws.append([f'产品{j}', rng.randint(1, 999), _paragraph(rng)[:40]])
        wb.save(office / f'prices_{i}.xlsx')
        prs = pptx.Presentation()
        for j in range(40):
            slide = prs.slides.add_slide(prs.slide_layouts[1])
            slide.shapes.title.text = f'第 {j} 页'
            slide.placeholders[1].text = _paragraph(rng)[:200]
        prs.save(office / f'deck_{i}.pptx')
        pdf = pymupdf.open()
        for j in range(30):
            page = pdf.new_page()
            page.insert_textbox(pymupdf.Rect(50, 50, 550, 600), _paragraph(rng) * 2,
                                fontname='china-s', fontsize=10)
            if j % 5 == 0:  # a ruled 4x3 table on every fifth page exercises find_tables()
                for r in range(4):
                    for c in range(3):
                        cell = pymupdf.Rect(50 + c * 150, 650 + r * 20, 200 + c * 150, 670 + r * 20)
                        page.draw_rect(cell, color=(0, 0, 0), width=0.5)
                        page.insert_text((cell.x0 + 3, cell.y1 - 5), f'r{r}c{c}', fontsize=9)
        pdf.save(office / f'report_{i}.pdf')
        pdf.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mb', type=float, default=7.0, help='corpus size in MB (about 5.5 MB of it text)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_corpus(root, args.mb)
        files = walk_repo(root, 50 * 1024 * 1024).files

        # Baseline: read and decode every file, errors replaced (binary formats included).
        start = time.perf_counter()
        for entry in files:
            entry.path.read_bytes().decode('utf-8', errors='replace')
        baseline = time.perf_counter() - start

        size = defaultdict(int)
        seconds = defaultdict(float)
        chars = 0
        start = time.perf_counter()
        for entry in files:
            suffix = entry.path.suffix.lower()
            t0 = time.perf_counter()
            document = parse_file(entry.path, entry.source)
            seconds[suffix] += time.perf_counter() - t0
            size[suffix] += entry.size
            chars += sum(len(s.text) for s in document.sections)
        total = time.perf_counter() - start

    mb = 1024 * 1024
    total_bytes = sum(size.values())
    print(f'cores: {os.cpu_count()}  files: {len(files)}  input: {total_bytes / mb:.1f} MB  '
          f'text out: {chars / 1e6:.2f} M chars')
    print(f'{"format":8} {"MB":>7} {"seconds":>8} {"MB/s":>8}')
    for suffix in sorted(size, key=lambda s: -size[s] / max(seconds[s], 1e-9)):
        print(f'{suffix:8} {size[suffix] / mb:7.2f} {seconds[suffix]:8.3f} '
              f'{size[suffix] / mb / seconds[suffix]:8.1f}')
    print(f'total: {total_bytes / mb / total:.1f} MB/s in {total:.2f} s; '
          f'baseline read+decode: {total_bytes / mb / baseline:.1f} MB/s in {baseline:.3f} s; '
          f'parse/baseline time ratio: {total / baseline:.0f}x')


if __name__ == '__main__':
    main()
