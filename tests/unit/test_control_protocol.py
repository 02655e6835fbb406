"""The control protocol's framing, without sockets."""

from __future__ import annotations

import datetime
import json
import math

import pytest

from fuwad.control.protocol import (
    PROTOCOL_VERSION,
    Answer,
    LineReader,
    LineTooLong,
    Request,
    decode_answer,
    decode_request,
    encode_error,
    encode_ok,
    encode_request,
)
from fuwad.errors import ProtocolError


def test_reader_joins_a_line_fed_one_byte_at_a_time() -> None:
    reader = LineReader(100)
    line = encode_request(7, "status")
    got: list[bytes] = []
    for i in range(len(line)):
        got += reader.feed(line[i:i + 1])
        if i < len(line) - 1:
            assert got == []
    assert got == [line[:-1]]
    assert reader.pending == 0


def test_reader_splits_several_lines_and_keeps_the_rest() -> None:
    reader = LineReader(100)
    assert reader.feed(b"one\ntwo\nthr") == [b"one", b"two"]
    assert reader.pending == 3
    assert reader.feed(b"ee\n\nfour") == [b"three", b""]
    assert reader.feed(b"\n") == [b"four"]


def test_reader_accepts_a_line_of_exactly_the_cap() -> None:
    reader = LineReader(10)
    assert reader.feed(b"x" * 10) == []
    assert reader.feed(b"\n") == [b"x" * 10]


def test_reader_refuses_a_partial_line_past_the_cap_before_its_newline() -> None:
    reader = LineReader(10)
    reader.feed(b"x" * 10)
    with pytest.raises(LineTooLong, match="longer than 10 bytes"):
        reader.feed(b"y")


def test_reader_refuses_a_long_line_that_arrives_whole() -> None:
    reader = LineReader(10)
    with pytest.raises(LineTooLong):
        reader.feed(b"ok\n" + b"z" * 11 + b"\n")


def test_reader_refuses_everything_after_an_overlong_line() -> None:
    reader = LineReader(4)
    with pytest.raises(LineTooLong):
        reader.feed(b"abcdefgh")
    with pytest.raises(LineTooLong):
        reader.feed(b"ok\n")


def test_reader_holds_no_more_than_the_cap_plus_one_chunk() -> None:
    reader = LineReader(1000)
    for _ in range(10):
        reader.feed(b"a" * 99)
    assert reader.pending == 990
    with pytest.raises(LineTooLong):
        reader.feed(b"a" * 99)
    assert reader.pending == 0


def test_request_round_trips() -> None:
    line = encode_request("abc", "scale", {"count": 3})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line[:-1]) == Request("abc", "scale", {"count": 3})


def test_request_without_args_or_id_gets_defaults() -> None:
    request = decode_request(b'{"v": 1, "cmd": "ping"}')
    assert request == Request(None, "ping", {})
    assert decode_request(b'{"v":1,"cmd":"ping","args":null}').args == {}


def test_request_ignores_unknown_top_level_keys() -> None:
    line = b'{"v":1,"id":1,"cmd":"ping","trace":"x"}'
    assert decode_request(line).cmd == "ping"


def test_text_with_newlines_is_escaped_onto_one_line() -> None:
    line = encode_error(1, "first\nsecond\r\nthird\u2028")
    assert line.count(b"\n") == 1
    assert decode_answer(line[:-1]).error == "first\nsecond\r\nthird\u2028"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"v":1,"cmd":"ping"', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"ping"', "must be a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"cmd":"ping"}', "no protocol version"),
        (b'{"v":2,"cmd":"ping"}', "version 2"),
        (b'{"v":"1","cmd":"ping"}', "version '1'"),
        (b'{"v":true,"cmd":"ping"}', "version True"),
        (b'{"v":1}', '"cmd"'),
        (b'{"v":1,"cmd":""}', '"cmd"'),
        (b'{"v":1,"cmd":5}', '"cmd"'),
        (b'{"v":1,"cmd":"x","args":[1]}', '"args"'),
        (b'{"v":1,"id":[1],"cmd":"x"}', "id must be"),
        (b'{"v":1,"id":true,"cmd":"x"}', "id must be"),
        (b'{"v":1,"id":"' + b"i" * 200 + b'","cmd":"x"}', "id must be"),
        (b'{"v":1,"cmd":"x","args":{"n":NaN}}', "NaN"),
        (b'{"v":1,"cmd":"x","args":{"n":-Infinity}}', "Infinity"),
        (b"[" * 200000, "nested too deeply"),
        (b'{"v":1,"cmd":"x","args":{"n":1' + b"0" * 5000 + b"}}",
         "not valid JSON"),
    ],
)
def test_malformed_request_is_refused_with_a_reason(
    line: bytes, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_request(line)


def test_ok_answer_round_trips_with_dates_as_text() -> None:
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    line = encode_ok(3, {"at": when, "n": [1, 2]})
    answer = decode_answer(line[:-1])
    assert answer == Answer(3, True, {"at": when.isoformat(), "n": [1, 2]})
    assert json.loads(line)["v"] == PROTOCOL_VERSION


def test_error_answer_round_trips() -> None:
    answer = decode_answer(encode_error(None, "scale: no")[:-1])
    assert answer == Answer(None, False, None, "scale: no")


def test_answer_with_data_json_cannot_hold_is_not_encoded() -> None:
    with pytest.raises(ValueError):
        encode_ok(1, {"x": math.nan})
    with pytest.raises(TypeError, match="object cannot be sent"):
        encode_ok(1, {"x": object()})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"v":1,"id":1}', '"ok"'),
        (b'{"v":1,"id":1,"ok":"yes"}', '"ok"'),
        (b'{"v":1,"id":1,"ok":false}', "no error message"),
        (b'{"v":1,"id":1,"ok":false,"error":""}', "no error message"),
        (b'{"v":9,"id":1,"ok":true}', "version 9"),
        (b"garbage", "not valid JSON"),
    ],
)
def test_broken_answer_is_a_protocol_error(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_answer(line)
