"""Parsers on real files built in tmp_path: sections, anchors and kinds per format, Chinese text, and
every bad input turning into a ParseError with a reason a user can act on."""
from __future__ import annotations

import zipfile
from pathlib import Path

import docx
import openpyxl
import pptx
import pymupdf
import pytest
from pptx.util import Inches

from huixiangdou.primitive.documents import SUPPORTED_SUFFIXES, ParseError, parse_file


def _write(tmp_path: Path, name: str, data: str | bytes, encoding: str = 'utf-8') -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def _parse(path: Path):
    return parse_file(path, path.name)


def _by_anchor(document) -> dict[str, str]:
    out: dict[str, str] = {}
    for section in document.sections:
        out[section.anchor] = out.get(section.anchor, '') + section.text
    return out


# --- Markdown ---------------------------------------------------------------------------------

MARKDOWN = """\
前言：茴香豆是一个群聊助手。

# 安装

## Linux

```bash
# 这不是标题
pip install huixiangdou
```

## Windows
请使用 WSL。

配置说明
========
修改 config.ini。

### 嵌套 ##

在配置说明下面。
"""


def test_markdown_splits_per_heading_with_nested_anchors(tmp_path):
    document = _parse(_write(tmp_path, 'guide.md', MARKDOWN))
    anchors = [s.anchor for s in document.sections]
    assert anchors == ['', '安装/Linux', '安装/Windows', '配置说明', '配置说明/嵌套']
    assert all(s.kind == 'markdown' for s in document.sections)
    assert document.source == 'guide.md'


def test_markdown_keeps_code_fence_whole_and_carries_bare_parent_heading(tmp_path):
    sections = _by_anchor(_parse(_write(tmp_path, 'guide.md', MARKDOWN)))
    linux = sections['安装/Linux']
    # The "# ..." line inside the fence is code, not a heading, and the fence is intact.
    assert '```bash\n# 这不是标题\npip install huixiangdou\n```' in linux
    # "# 安装" had no body of its own: its text travels with the first subsection.
    assert linux.startswith('# 安装\n')
    assert sections[''] == '前言：茴香豆是一个群聊助手。'


def test_markdown_front_matter_is_not_a_setext_heading(tmp_path):
    text = '---\ntitle: 手册\nlang: zh\n---\n\n# 正文\n内容\n'
    document = _parse(_write(tmp_path, 'x.markdown', text))
    assert [s.anchor for s in document.sections] == ['', '正文']
    assert 'lang: zh' in document.sections[0].text


def test_markdown_blank_line_of_spaces_after_a_paragraph_is_not_a_crash(tmp_path):
    """The shape that made real READMEs skipped: a line of only spaces right after a paragraph line,
    inside a numbered list (before an indented fence) and at top level."""
    text = ('# 安装\n\n1. 下载代码\n   \n   ```bash\n   # 克隆仓库\n   git clone x\n   ```\n'
            '2. 安装依赖\n\n## 运行\n启动服务。\n \n```\npython -m x\n```\n')
    document = _parse(_write(tmp_path, 'README.md', text))
    sections = _by_anchor(document)
    assert list(sections) == ['安装', '安装/运行']
    assert '   ```bash\n   # 克隆仓库\n   git clone x\n   ```' in sections['安装']
    assert sections['安装/运行'] == '## 运行\n启动服务。\n \n```\npython -m x\n```'


def test_markdown_titles_are_plain_text(tmp_path):
    text = '## 安装 [指南](https://x.cn/a_b) `pip` **现在** ![logo](l.png) <a name="i"></a>&amp; \\# ##\n正文\n'
    document = _parse(_write(tmp_path, 't.md', text))
    assert [s.anchor for s in document.sections] == ['安装 指南 pip 现在 logo & #']
    assert document.sections[0].text == text.strip('\n')


def test_markdown_html_blocks_and_tables_do_not_make_headings(tmp_path):
    text = ('<!--\n# 注释掉的标题\n-->\n\n<div>\n## 仍在 HTML 块里\n</div>\n\n# 正文\n\n'
            '| 名称 | 价格 |\n|---|---|\n| 基础版 | 免费 |\n表格的最后一行\n---\n')
    document = _parse(_write(tmp_path, 't.md', text))
    assert [s.anchor for s in document.sections] == ['', '正文']
    # GitHub reads "表格的最后一行" as a table row and "---" as a rule, not as a setext heading.
    assert document.sections[1].text.endswith('| 基础版 | 免费 |\n表格的最后一行\n---')


def test_markdown_headings_in_lists_start_sections_but_indented_code_does_not(tmp_path):
    text = ('# 评测\n\n- ### 快速开始\n\n  运行 run.py。\n\n  #### 支持的模型\n\n  见列表。\n\n'
            '示例：\n\n    # 缩进代码，不是标题\n    run.py\n')
    document = _parse(_write(tmp_path, 't.md', text))
    assert [s.anchor for s in document.sections] == [
        '评测/快速开始', '评测/快速开始/支持的模型']
    assert document.sections[1].text.endswith('    # 缩进代码，不是标题\n    run.py')


# --- Plain text, reST, code -------------------------------------------------------------------

def test_gbk_chinese_text_decodes(tmp_path):
    text = '茴香豆支持飞书和微信。\r\n第二行：配置文件是 config.ini。\r\n'
    document = _parse(_write(tmp_path, 'readme.txt', text, encoding='gbk'))
    assert document.text == '茴香豆支持飞书和微信。\n第二行：配置文件是 config.ini。'
    assert document.sections[0].kind == 'text' and document.sections[0].anchor == ''


def test_utf8_bom_and_utf16_are_decoded(tmp_path):
    bom = _parse(_write(tmp_path, 'a.txt', '\ufeff你好，世界'))
    assert bom.text == '你好，世界'
    utf16 = _parse(_write(tmp_path, 'b.txt', '\ufeff你好 UTF-16', encoding='utf-16-le'))
    assert utf16.text == '你好 UTF-16'


def test_rst_titles_become_anchors(tmp_path):
    text = ('=====\n用户手册\n=====\n\n简介文字。\n\n安装\n----\n\n运行 install.sh。\n\n'
            '源码安装\n~~~~~~~~\n\npip install -e .\n\n常见问题\n--------\n\n看日志。\n')
    document = _parse(_write(tmp_path, 'manual.rst', text))
    assert [s.anchor for s in document.sections] == [
        '用户手册', '用户手册/安装', '用户手册/安装/源码安装', '用户手册/常见问题']
    # Adornment lines are dropped; titles stay in the text.
    assert '~~~' not in document.text and '源码安装' in document.text


def test_source_code_is_one_code_section_and_suffix_case_is_ignored(tmp_path):
    code = 'def 问候():\n    return "你好"\n'
    document = _parse(_write(tmp_path, 'Tool.PY', code))
    assert [(s.kind, s.anchor) for s in document.sections] == [('code', '')]
    assert document.text == code.strip('\n')
    for suffix in ('.py', '.cpp', '.go', '.yaml', '.json', '.sql', '.proto', '.sh', '.tsx'):
        assert suffix in SUPPORTED_SUFFIXES


# --- PDF --------------------------------------------------------------------------------------

def _make_pdf(path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), 'First page: overview', fontsize=12)
    page.insert_text((72, 100), '茴香豆概述', fontname='china-s', fontsize=12)
    page = doc.new_page()
    page.insert_text((72, 72), 'Price list below', fontsize=12)
    for r, row in enumerate([['Name', 'Price', 'Unit'], ['apple', '3', 'kg'], ['pear', '5', 'kg']]):
        for c, value in enumerate(row):
            rect = pymupdf.Rect(72 + c * 100, 150 + r * 20, 172 + c * 100, 170 + r * 20)
            page.draw_rect(rect, color=(0, 0, 0), width=1)
            page.insert_text((rect.x0 + 3, rect.y1 - 5), value, fontsize=10)
    page.insert_text((72, 300), 'After the table', fontsize=12)
    doc.save(path)
    doc.close()


def test_pdf_pages_are_anchors_and_tables_are_rows(tmp_path):
    path = tmp_path / 'report.pdf'
    _make_pdf(path)
    document = _parse(path)
    page1 = [s for s in document.sections if s.anchor == 'page 1']
    assert len(page1) == 1 and '茴香豆概述' in page1[0].text
    page2 = {s.kind: s.text for s in document.sections if s.anchor == 'page 2'}
    assert page2['table'].split('\n') == ['Name | Price | Unit', 'apple | 3 | kg', 'pear | 5 | kg']
    # The table's cells are not repeated in the page's running text.
    assert 'Price list below' in page2['text'] and 'After the table' in page2['text']
    assert 'apple' not in page2['text']


def test_password_protected_pdf_is_skipped_with_reason(tmp_path):
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), 'secret', fontsize=12)
    path = tmp_path / 'locked.pdf'
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw='owner', user_pw='user')
    doc.close()
    with pytest.raises(ParseError, match='PDF is password-protected'):
        _parse(path)


@pytest.mark.parametrize('keep', [0.1, 0.5, 0.95])
def test_truncated_pdf_is_skipped_with_reason(tmp_path, keep):
    good = tmp_path / 'good.pdf'
    _make_pdf(good)
    data = good.read_bytes()
    path = _write(tmp_path, 'broken.pdf', data[:int(len(data) * keep)])
    with pytest.raises(ParseError, match='PDF is truncated|not a readable PDF'):
        _parse(path)


def test_pdf_with_broken_xref_but_complete_is_still_read(tmp_path):
    good = tmp_path / 'good.pdf'
    _make_pdf(good)
    data = good.read_bytes()
    head, _, tail = data.rpartition(b'startxref')
    # Point startxref at a wrong offset: MuPDF repairs the file, and nothing is missing.
    path = _write(tmp_path, 'sloppy.pdf', head + b'startxref\n12\n%%EOF\n')
    assert '茴香豆概述' in _parse(path).text


def test_corrupt_pdf_is_skipped_with_reason(tmp_path):
    path = _write(tmp_path, 'noise.pdf', b'%PDF-1.7\n' + bytes(range(256)) * 16)
    with pytest.raises(ParseError, match='not a readable PDF|PDF is truncated'):
        _parse(path)


def test_pdf_without_text_layer_says_so(tmp_path):
    doc = pymupdf.open()
    doc.new_page().draw_rect(pymupdf.Rect(50, 50, 200, 200), color=(0, 0, 0))
    path = tmp_path / 'scan.pdf'
    doc.save(path)
    doc.close()
    with pytest.raises(ParseError, match='OCR'):
        _parse(path)


# --- Word -------------------------------------------------------------------------------------

def test_docx_keeps_order_headings_and_tables(tmp_path):
    d = docx.Document()
    d.add_paragraph('封面说明')
    d.add_heading('产品介绍', level=1)
    d.add_paragraph('茴香豆是群聊助手。')
    d.add_heading('价格', level=2)
    table = d.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([('名称', '价格'), ('基础版', '免费'), ('企业版', '联系我们')]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    d.add_paragraph('价格随时调整。')
    d.add_heading('部署', level=1)
    d.add_paragraph('支持 Linux。')
    path = tmp_path / '产品.docx'
    d.save(path)

    sections = _parse(path).sections
    assert [(s.anchor, s.kind) for s in sections] == [
        ('', 'text'), ('产品介绍', 'text'), ('产品介绍/价格', 'table'), ('产品介绍/价格', 'text'),
        ('部署', 'text')]
    assert sections[2].text == '价格\n名称 | 价格\n基础版 | 免费\n企业版 | 联系我们'
    assert sections[3].text == '价格随时调整。'
    assert sections[1].text == '产品介绍\n茴香豆是群聊助手。'


def test_docx_custom_and_outline_level_headings_are_found(tmp_path):
    from docx.enum.style import WD_STYLE_TYPE
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    d = docx.Document()
    chapter = d.styles.add_style('章标题', WD_STYLE_TYPE.PARAGRAPH)
    chapter.base_style = d.styles['Heading 1']
    d.add_paragraph('第一章', style='章标题')
    d.add_paragraph('正文一。')
    para = d.add_paragraph('手动大纲级别')
    outline_level = OxmlElement('w:outlineLvl')
    outline_level.set(qn('w:val'), '1')  # level 2 in Word's 0-based numbering
    para._p.get_or_add_pPr().append(outline_level)
    d.add_paragraph('正文二。')
    path = tmp_path / 'custom.docx'
    d.save(path)
    assert [s.anchor for s in _parse(path).sections] == ['第一章', '第一章/手动大纲级别']


def test_docx_merged_cells_are_written_once(tmp_path):
    d = docx.Document()
    table = d.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 2)).text = '合并标题'
    for c, v in enumerate(['a', 'b', 'c']):
        table.cell(1, c).text = v
    path = tmp_path / 'merged.docx'
    d.save(path)
    assert _parse(path).text == '合并标题\na | b | c'


def test_docx_that_is_not_a_zip_is_skipped(tmp_path):
    path = _write(tmp_path, 'fake.docx', '这其实是一个文本文件')
    with pytest.raises(ParseError, match=r'not a \.docx \(not a zip archive\)'):
        _parse(path)


def test_zip_without_word_content_is_skipped(tmp_path):
    path = tmp_path / 'other.docx'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('hello.txt', 'hi')
    with pytest.raises(ParseError, match='without Word content'):
        _parse(path)


def test_old_binary_doc_renamed_to_docx_says_how_to_fix(tmp_path):
    path = _write(tmp_path, 'old.docx', b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1' + b'\x00' * 512)
    with pytest.raises(ParseError, match='save it as .docx'):
        _parse(path)


# --- Spreadsheets -----------------------------------------------------------------------------

def test_xlsx_rows_carry_their_header_and_sheet_anchor(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = '价格'
    ws.append(['名称', '价格', '备注'])
    ws.append(['苹果', 3.0, None])
    ws.append(['香蕉', 2.5, '进口'])
    ws.append([None, None, None])
    numbers = wb.create_sheet('Numbers')
    numbers.append([1, 2])
    numbers.append([3, 4])
    wb.create_sheet('Empty')
    path = tmp_path / 'prices.xlsx'
    wb.save(path)

    document = _parse(path)
    assert [(s.anchor, s.kind) for s in document.sections] == [
        ('sheet 价格', 'table'), ('sheet Numbers', 'table')]
    assert document.sections[0].text == '名称: 苹果 | 价格: 3\n名称: 香蕉 | 价格: 2.5 | 备注: 进口'
    # A first row of numbers is data, not a header.
    assert document.sections[1].text == '1 | 2\n3 | 4'


def test_xlsx_reads_cached_formula_values_not_formulas(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(['a', 'b'])
    wb.active.append([1, '=A2*2'])
    path = tmp_path / 'f.xlsx'
    wb.save(path)
    # openpyxl writes no cached value, so the formula cell is empty rather than "=A2*2".
    assert _parse(path).text == 'a: 1'


def test_corrupt_xlsx_becomes_parse_error(tmp_path):
    path = tmp_path / 'bad.xlsx'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('[Content_Types].xml', '<garbage')
        archive.writestr('xl/workbook.xml', 'not xml at all')
    with pytest.raises(ParseError, match='XLSX'):
        _parse(path)


def test_gbk_csv_with_semicolons_is_header_aware(tmp_path):
    text = '城市;人口\r\n北京;2189万\r\n上海;2487万\r\n'
    document = _parse(_write(tmp_path, 'cities.csv', text, encoding='gbk'))
    assert document.sections[0].kind == 'table'
    assert document.text == '城市: 北京 | 人口: 2189万\n城市: 上海 | 人口: 2487万'


# --- Slides -----------------------------------------------------------------------------------

def test_pptx_slides_with_title_table_and_notes(tmp_path):
    prs = pptx.Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = '茴香豆架构'
    slide.placeholders[1].text = '三层：primitive、service、frontend'
    slide.notes_slide.notes_text_frame.text = '讲解时强调拒答。'
    slide = prs.slides.add_slide(prs.slide_layouts[5])
    slide.shapes.title.text = '价格'
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for r, (a, b) in enumerate([('版本', '价格'), ('开源版', '免费')]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    prs.slides.add_slide(prs.slide_layouts[6])  # blank slide: no section
    path = tmp_path / 'deck.pptx'
    prs.save(path)

    sections = _parse(path).sections
    assert [s.anchor for s in sections] == ['slide 1', 'slide 2']
    assert sections[0].text == '茴香豆架构\n三层：primitive、service、frontend\nNotes: 讲解时强调拒答。'
    assert sections[1].text == '价格\n版本 | 价格\n开源版 | 免费'


# --- HTML -------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html><html><head><meta charset="gbk"><title>文档</title>
<style>.x { color: red }</style><script>var secret = 1;</script></head>
<body><header><nav><a href="/">首页</a> | <a href="/docs">文档</a></nav></header>
<h1>快速开始</h1><p>先安装<b>依赖</b>。</p>
<h2>命令</h2><pre>pip install -e .
  python -m huixiangdou.main --standalone</pre>
<h2>价格表</h2><table><tr><th>版本</th><th>价格</th></tr><tr><td>开源版</td><td>免费</td></tr></table>
<noscript>请启用 JavaScript</noscript>
<footer>版权所有 2024</footer></body></html>"""


def test_html_drops_chrome_and_keeps_headings_pre_and_tables(tmp_path):
    document = _parse(_write(tmp_path, 'start.html', HTML, encoding='gbk'))
    sections = _by_anchor(document)
    assert list(sections) == ['快速开始', '快速开始/命令', '快速开始/价格表']
    assert sections['快速开始'] == '快速开始\n先安装依赖。'
    assert 'pip install -e .\n  python -m huixiangdou.main --standalone' in sections['快速开始/命令']
    assert sections['快速开始/价格表'] == '价格表\n版本 | 价格\n开源版 | 免费'
    for dropped in ('secret', 'color', '首页', '版权所有', 'JavaScript'):
        assert dropped not in document.text


def test_html_article_header_is_kept(tmp_path):
    html = '<html><body><article><header><h1>发布说明</h1></header><p>新增飞书支持。</p></article></body></html>'
    document = _parse(_write(tmp_path, 'news.htm', html))
    assert [(s.anchor, s.text) for s in document.sections] == [('发布说明', '发布说明\n新增飞书支持。')]


@pytest.mark.timeout(90)
def test_html_nested_fifty_thousand_deep_parses_in_linear_time(tmp_path):
    # Each level appends a line end inside every enclosing block: editing the tree for that went
    # quadratic with depth (about 2 minutes at this depth), a walk that reads each node once does not.
    depth = 50_000
    html = ('<html><body><h1>深层页面</h1>' + '<div><section><ul><li>' * depth + '<table><tr><td>最深处</td>'
            '<td>的单元格</td></tr></table>' + '</li></ul></section></div>' * depth + '<p>结尾段落</p></body></html>')
    document = _parse(_write(tmp_path, 'deep.html', html))
    assert [(s.anchor, s.text) for s in document.sections] == [('深层页面', '深层页面\n最深处 | 的单元格\n\n结尾段落')]


# --- Bad inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize('name, data, reason', [
    ('empty.md', b'', 'empty file'),
    ('blank.txt', b'  \n\n\t \n', 'no text'),
    ('image.md', b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR' + bytes(range(256)) * 4, 'binary data'),
    ('latin1.txt', 'café au lait, crème brûlée'.encode('latin-1'), 'not valid UTF-8 or GB18030'),
    ('archive.xyz', b'hello', 'unsupported file type .xyz'),
    ('Makefile', b'all:\n\techo hi\n', 'unsupported file type (no extension)'),
])
def test_bad_inputs_raise_parse_error_with_reason(tmp_path, name, data, reason):
    with pytest.raises(ParseError, match=reason.replace('(', r'\(').replace(')', r'\)')):
        _parse(_write(tmp_path, name, data))


def test_binary_without_nul_bytes_is_still_binary(tmp_path):
    data = bytes(b for b in range(1, 32) if b not in (9, 10, 12, 13, 27)) * 50 + 'abc'.encode() * 100
    with pytest.raises(ParseError, match='binary data in a text file'):
        _parse(_write(tmp_path, 'noise.txt', data))


def test_every_supported_suffix_turns_garbage_into_parse_error(tmp_path):
    """The boundary: no library exception escapes parse_file, whatever the bytes."""
    garbage = b'PK\x03\x04' + bytes(range(256)) * 8
    for suffix in sorted(SUPPORTED_SUFFIXES):
        path = _write(tmp_path, f'garbage{suffix}', garbage)
        with pytest.raises(ParseError):
            parse_file(path, path.name)


def test_missing_file_is_a_parse_error(tmp_path):
    with pytest.raises(ParseError, match='could not read'):
        _parse(tmp_path / 'gone.md')


def _xlsx_with_shared_strings(path: Path, part: str, megabytes: float) -> Path:
    """An xlsx whose shared strings (`megabytes` MB of one-letter strings) sit in `part`, found by its
    relationship and content type as Excel and openpyxl find them, whatever its name."""
    base = path.with_suffix('.base.xlsx')
    workbook = openpyxl.Workbook()
    workbook.active['A1'] = 'hello'
    workbook.save(base)
    count = int(megabytes * 1024 * 1024 / 17)
    strings = (b'<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
               + b'<si><t>x</t></si>' * count + b'</sst>')
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == 'xl/_rels/workbook.xml.rels':
                data = data.replace(b'</Relationships>', (
                    '<Relationship Id="rIdSS" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                    f'relationships/sharedStrings" Target="/{part}"/></Relationships>').encode())
            elif item.filename == '[Content_Types].xml':
                data = data.replace(b'</Types>', (
                    f'<Override PartName="/{part}" ContentType="application/vnd.openxmlformats-officedocument.'
                    'spreadsheetml.sharedStrings+xml"/></Types>').encode())
            elif item.filename == 'xl/worksheets/sheet1.xml':
                data = data.replace(b'</sheetData>', b'<row r="2"><c r="A2" t="s"><v>0</v></c></row></sheetData>')
            out.writestr(item.filename, data)
        out.writestr(part, strings)
    base.unlink()
    return path


@pytest.mark.parametrize('part', ['xl/sharedStrings.xml', 'xl/strings.bin'])
def test_max_expanded_mb_counts_xml_parts_by_content_type_not_only_by_name(tmp_path, part):
    path = _xlsx_with_shared_strings(tmp_path / 'strings.xlsx', part, 3)
    assert 'x' in parse_file(path, 'strings.xlsx').sections[0].text  # openpyxl reads the part, named either way
    with pytest.raises(ParseError, match=r'its XML expands to \d+ MB, over max_expanded_mb = 2'):
        parse_file(path, 'strings.xlsx', max_expanded_mb=2)
