"""Reading a solution's Lambda sources: handlers found by signature, named by file, folder or function; zips."""

from __future__ import annotations

import io
import zipfile

import pytest

from scones.solution.sources import SolutionSourceError, name_key, read_sources, zip_source


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_one_file_with_several_handlers_names_each_by_its_function(tmp_path):
    source = write(
        tmp_path / "lambda.py",
        "def helper(x):\n    pass\n\ndef serialize(event, context):\n    pass\n\ndef classify(event, ctx):\n    pass\n",
    )
    handlers = read_sources([source])
    assert [(h.function, h.names, h.handler) for h in handlers] == [
        ("serialize", ("serialize",), "lambda.serialize"),
        ("classify", ("classify",), "lambda.classify"),
    ]


def test_a_file_or_folder_with_one_handler_is_named_by_it_first(tmp_path):
    file = write(tmp_path / "filter_inferences.py", "def lambda_handler(event, context):\n    return event\n")
    folder = tmp_path / "serializer"
    write(folder / "lambda_function.py", "def lambda_handler(event, context):\n    return event\n")
    write(folder / "helpers.py", "def lambda_handler(event, context):\n    pass\n")  # not the entry file
    handlers = read_sources([file, folder])
    assert handlers[0].names == ("filter_inferences", "lambda_handler")
    assert handlers[1].names == ("serializer", "lambda_handler")
    assert handlers[1].handler == "lambda_function.lambda_handler"
    assert handlers[1].label == "serializer/lambda_function.lambda_handler"


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("missing.py", None, "no such file"),
        ("notes.txt", "hello", "not a Python file"),
        ("broken.py", "def f(:\n", "line 1"),
        ("empty.py", "def helper(x):\n    pass\n", "no handler found"),
    ],
)
def test_unusable_sources_are_named_with_the_reason(tmp_path, name, text, says):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(SolutionSourceError, match=says):
        read_sources([path])


def test_a_file_zips_alone_and_a_folder_with_its_contents_without_caches(tmp_path):
    file = write(tmp_path / "one" / "lambda.py", "x = 1\n")
    write(tmp_path / "one" / "other.py", "y = 2\n")
    folder = tmp_path / "fn"
    write(folder / "lambda_function.py", "x = 1\n")
    write(folder / "lib" / "util.py", "y = 2\n")
    write(folder / "__pycache__" / "x.pyc", "")
    assert zipfile.ZipFile(io.BytesIO(zip_source(file))).namelist() == ["lambda.py"]
    assert sorted(zipfile.ZipFile(io.BytesIO(zip_source(folder))).namelist()) == ["lambda_function.py", "lib/util.py"]


@pytest.mark.parametrize(
    "name", ["serializeImageData", "serialize_image_data", "Serialize-Image-Data-Lambda", "serializeImageDataFunction"]
)
def test_name_keys_ignore_case_separators_and_noise_words(name):
    assert name_key(name) == "serializeimagedata"
