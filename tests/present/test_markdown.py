"""Markdown helpers shared by the stages' metadata and reports."""

import base64

from robust_data.present.markdown import count_table, inline_png


def test_count_table_keeps_order_and_right_aligns_counts() -> None:
    table = count_table({"train": 12345, "test": 7}, "split")
    assert table.splitlines() == [
        "| split | rows |",
        "|---|---:|",
        "| train | 12,345 |",
        "| test | 7 |",
    ]


def test_inline_png_embeds_the_bytes_unchanged() -> None:
    png = b"\x89PNG\r\n\x1a\nnot really"
    markdown = inline_png(png, "a plot")
    assert markdown.startswith("![a plot](data:image/png;base64,")
    assert base64.b64decode(markdown.split(",", 1)[1].rstrip(")")) == png
