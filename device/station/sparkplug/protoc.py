"""A small proto2 compiler: enough of the language for `sparkplug_b.proto`, no protoc needed.

protoc is not installed on the edge box and nothing may be downloaded, so the Sparkplug schema is kept as
the readable `.proto` the spec publishes and compiled here into a `FileDescriptorProto`.
`python -m device.station.sparkplug.protoc` regenerates `sparkplug_b_pb2.py`; a test checks the two agree.

Supported: syntax, package, option (ignored), enum, message (nested), optional/required/repeated scalar
and message fields, oneof, extensions ranges. Anything else is a `ProtoSyntaxError` naming the line.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from google.protobuf import descriptor_pb2

FieldProto: TypeAlias = descriptor_pb2.FieldDescriptorProto

PROTO_PATH = Path(__file__).with_name("sparkplug_b.proto")
PB2_PATH = Path(__file__).with_name("sparkplug_b_pb2.py")
PB2_MODULE = "device.station.sparkplug.sparkplug_b_pb2"

_MAX_FIELD_NUMBER = 536_870_911  # 2**29 - 1
_SCALARS = {
    "double": FieldProto.TYPE_DOUBLE,
    "float": FieldProto.TYPE_FLOAT,
    "int64": FieldProto.TYPE_INT64,
    "uint64": FieldProto.TYPE_UINT64,
    "int32": FieldProto.TYPE_INT32,
    "fixed64": FieldProto.TYPE_FIXED64,
    "fixed32": FieldProto.TYPE_FIXED32,
    "bool": FieldProto.TYPE_BOOL,
    "string": FieldProto.TYPE_STRING,
    "bytes": FieldProto.TYPE_BYTES,
    "uint32": FieldProto.TYPE_UINT32,
    "sfixed32": FieldProto.TYPE_SFIXED32,
    "sfixed64": FieldProto.TYPE_SFIXED64,
    "sint32": FieldProto.TYPE_SINT32,
    "sint64": FieldProto.TYPE_SINT64,
}
_LABELS = {
    "optional": FieldProto.LABEL_OPTIONAL,
    "required": FieldProto.LABEL_REQUIRED,
    "repeated": FieldProto.LABEL_REPEATED,
}
_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"[^"]*"|[A-Za-z_][A-Za-z0-9_.]*|-?\d+|[{}=;\[\](),<>]', re.S)


class ProtoSyntaxError(ValueError):
    pass


@dataclass
class _Token:
    text: str
    line: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, line = 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ProtoSyntaxError(f"line {line}: unexpected character {text[pos]!r}")
        piece = match.group(0)
        if not (piece.isspace() or piece.startswith("//") or piece.startswith("/*")):
            tokens.append(_Token(piece, line))
        line += piece.count("\n")
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.file = descriptor_pb2.FileDescriptorProto(name=filename)
        self.types: dict[str, int] = {}  # fully qualified name -> TYPE_MESSAGE / TYPE_ENUM
        self.unresolved: list[tuple[FieldProto, str, str]] = []  # field, type name, scope

    # -- token helpers --
    def peek(self) -> str | None:
        return self.tokens[self.pos].text if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        if self.pos >= len(self.tokens):
            raise ProtoSyntaxError(f"unexpected end of file (expected {expected or 'more'})")
        token = self.tokens[self.pos]
        if expected is not None and token.text != expected:
            raise ProtoSyntaxError(f"line {token.line}: expected {expected!r}, got {token.text!r}")
        self.pos += 1
        return token.text

    def error(self, message: str) -> ProtoSyntaxError:
        line = self.tokens[min(self.pos, len(self.tokens) - 1)].line if self.tokens else 0
        return ProtoSyntaxError(f"line {line}: {message}")

    def number(self) -> int:
        text = self.take()
        if not re.fullmatch(r"-?\d+", text):
            raise self.error(f"expected a number, got {text!r}")
        return int(text)

    def skip_statement(self) -> None:
        while self.take() != ";":
            pass

    # -- grammar --
    def parse(self) -> descriptor_pb2.FileDescriptorProto:
        scope = ""
        while self.peek() is not None:
            keyword = self.take()
            if keyword == "syntax":
                self.take("=")
                self.file.syntax = self.take().strip('"')
                self.take(";")
                if self.file.syntax != "proto2":
                    raise self.error(f"only proto2 is supported, got {self.file.syntax!r}")
            elif keyword == "package":
                self.file.package = self.take()
                scope = "." + self.file.package
                self.take(";")
            elif keyword == "option":
                self.skip_statement()
            elif keyword == "enum":
                self.parse_enum(self.file.enum_type.add(), scope)
            elif keyword == "message":
                self.parse_message(self.file.message_type.add(), scope)
            else:
                raise self.error(f"unsupported top-level statement {keyword!r}")
        self.resolve()
        return self.file

    def parse_enum(self, enum: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        enum.name = self.take()
        self.types[f"{scope}.{enum.name}"] = FieldProto.TYPE_ENUM
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "option":
                self.take()
                self.skip_statement()
                continue
            value = enum.value.add(name=self.take())
            self.take("=")
            value.number = self.number()
            self.take(";")
        self.take("}")

    def parse_message(self, message: descriptor_pb2.DescriptorProto, scope: str) -> None:
        message.name = self.take()
        full_name = f"{scope}.{message.name}"
        self.types[full_name] = FieldProto.TYPE_MESSAGE
        self.take("{")
        while self.peek() != "}":
            keyword = self.peek()
            if keyword == "message":
                self.take()
                self.parse_message(message.nested_type.add(), full_name)
            elif keyword == "enum":
                self.take()
                self.parse_enum(message.enum_type.add(), full_name)
            elif keyword == "oneof":
                self.take()
                index = len(message.oneof_decl)
                message.oneof_decl.add(name=self.take())
                self.take("{")
                while self.peek() != "}":
                    self.parse_field(message, full_name, FieldProto.LABEL_OPTIONAL, oneof_index=index)
                self.take("}")
            elif keyword == "extensions":
                self.take()
                start = self.number()
                end = start
                if self.peek() == "to":
                    self.take()
                    bound = self.take()
                    end = _MAX_FIELD_NUMBER if bound == "max" else int(bound)
                message.extension_range.add(start=start, end=end + 1)
                self.take(";")
            elif keyword == "option":
                self.take()
                self.skip_statement()
            elif keyword in _LABELS:
                self.take()
                self.parse_field(message, full_name, _LABELS[keyword])
            else:
                raise self.error(
                    f"unsupported statement {keyword!r} in {message.name} (proto2 fields need a label)"
                )
        self.take("}")

    def parse_field(
        self, message: descriptor_pb2.DescriptorProto, scope: str, label: int, oneof_index: int | None = None
    ) -> None:
        type_name = self.take()
        field = message.field.add(name=self.take(), label=label)
        self.take("=")
        field.number = self.number()
        if oneof_index is not None:
            field.oneof_index = oneof_index
        if self.peek() == "[":
            raise self.error("field options are not supported")
        self.take(";")
        if type_name in _SCALARS:
            field.type = _SCALARS[type_name]
        else:
            self.unresolved.append((field, type_name, scope))

    def resolve(self) -> None:
        """Protobuf scoping: look the name up from the innermost scope outwards."""
        for field, type_name, scope in self.unresolved:
            if type_name.startswith("."):
                candidates = [type_name]
            else:
                parts = scope.split(".")
                candidates = [".".join([*parts[:i], type_name]) for i in range(len(parts), 0, -1)]
            found = next((c for c in candidates if c in self.types), None)
            if found is None:
                raise ProtoSyntaxError(f"unknown type {type_name!r} for field {field.name!r} in {scope}")
            field.type = self.types[found]
            field.type_name = found


def compile_proto(text: str, filename: str = "sparkplug_b.proto") -> descriptor_pb2.FileDescriptorProto:
    """Parse proto2 source into a FileDescriptorProto (the input protobuf's runtime builds classes from)."""
    return _Parser(text, filename).parse()


def render_pb2(file_proto: descriptor_pb2.FileDescriptorProto, module: str = PB2_MODULE) -> str:
    serialized = file_proto.SerializeToString(deterministic=True)
    chunks = [serialized[i : i + 64] for i in range(0, len(serialized), 64)]
    body = "\n".join(f"    {chunk!r}" for chunk in chunks)
    return (
        "# Generated by device/station/sparkplug/protoc.py from sparkplug_b.proto. DO NOT EDIT.\n"
        "# Regenerate with: python -m device.station.sparkplug.protoc\n"
        '"""Sparkplug B protobuf messages (Payload, DataType)."""\n\n'
        "from google.protobuf import descriptor_pool as _descriptor_pool\n"
        "from google.protobuf import symbol_database as _symbol_database\n"
        "from google.protobuf.internal import builder as _builder\n\n"
        "_sym_db = _symbol_database.Default()\n\n"
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(\n"
        f"{body}\n"
        ")\n\n"
        "_globals = globals()\n"
        "_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, _globals)\n"
        f"_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, {module!r}, _globals)\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Regenerate sparkplug_b_pb2.py from sparkplug_b.proto."""
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else PROTO_PATH
    target = Path(args[1]) if len(args) > 1 else PB2_PATH
    target.write_text(render_pb2(compile_proto(source.read_text(), source.name)))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
