"""Reading and typing source files: header tolerance, trailing blanks, clear errors."""

import pandas as pd
import pytest

from apparel.errors import SourceError
from apparel.schemas import SOURCES
from apparel.sources import _drop_trailing_blank_rows, _select_columns, frame_rows, type_frame


def test_headers_match_ignoring_case_and_whitespace():
    raw = pd.DataFrame({" Province_ID": [1], "PROVINCE_NAMES  ": ["BALI"], "note": ["x"]})
    frame, warnings = _select_columns(raw, SOURCES["provinces"], "provinces.xlsx#Sheet1")
    assert list(frame.columns) == ["province_id", "province_names"]
    assert warnings == ["provinces.xlsx#Sheet1: ignored extra column(s) note"]


def test_missing_column_names_file_sheet_and_column():
    raw = pd.DataFrame({"city_id": [1], "province_id": [1]})
    with pytest.raises(SourceError, match=r"cities.xlsx#Worksheet: required column 'city_names' is missing"):
        _select_columns(raw, SOURCES["cities"], "cities.xlsx#Worksheet")


def test_only_trailing_blank_rows_are_dropped():
    frame = pd.DataFrame({"a": [1, None, 3, None, " "], "b": ["x", None, "z", None, None]})
    out = _drop_trailing_blank_rows(frame)
    assert len(out) == 3  # the blank row in the middle stays: it is a (bad) row, not padding


def test_typing_keeps_nulls_and_reports_bad_timestamps():
    raw = pd.DataFrame({"order_id": ["1", None, "3"], "order_date": ["2022-01-01 00:00:00.000", "2022-13-45", None],
                        "customer_id": ["5", "6", ""], "province_id": ["1", "1", "1"], "city_id": ["2", "2", "2"]})
    typed, warnings = type_frame(raw, SOURCES["orders"], "orders.csv")
    assert typed["order_id"].tolist()[0] == 1 and pd.isna(typed["order_id"][1])
    assert warnings == ["orders.csv: 1 order_date value(s) are not valid timestamps and load as NULL"]
    rows = frame_rows(typed)
    assert rows[0][0] == 1 and rows[1][0] is None and rows[1][1] is None and rows[2][2] is None


def test_non_integer_id_is_an_error_with_its_row():
    raw = pd.DataFrame({"product_category_id": ["1", "2.5"], "product_category_name": ["a", "b"]})
    with pytest.raises(SourceError, match=r"column 'product_category_id', row 3: '2.5' is not an integer"):
        type_frame(raw, SOURCES["product_categories"], "product_categories.json")
