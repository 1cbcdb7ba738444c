"""The settings model's machinery: each field's Twin (variable, flags, help), flags loaded over the environment, and
the one-line sentence for a value that cannot be used."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, cast, get_args

from annotated_types import Ge, Gt, Le
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from typing_extensions import Self

from ..errors import ConfigError
from ..utils import shown

# ---------------------------------------------------------------- what a field carries besides its type


@dataclass(frozen=True)
class Twin:
    """A setting's environment variable, its flags, its name in a sentence, and its help line."""

    env: str
    what: str
    flags: tuple[str, ...] = ()
    help: str = ""
    metavar: str | None = None
    #: A flag that may be given several times (its variable then holds a comma-separated list).
    repeat: bool = False


class ValueProblem(ValueError):
    """A validator's complaint about the form of a value ("has an unsupported scheme; use …"), without the value."""


#: The environment the next model built reads (None: os.environ); see OrchBaseSettings.load.
_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("orch_mcp_settings_env", default=None)


class _EnvSource(PydanticBaseSettingsSource):
    """Each field's variable (Twin.env) from the environment `OrchBaseSettings.load` was given; empty means unset."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        env = _ENV.get()
        raw = (os.environ if env is None else env).get(twin(field).env)
        return (raw or None), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            raw, _, _ = self.get_field_value(field, name)
            if raw is not None:
                values[name] = raw
        return values


def twin(field: FieldInfo) -> Twin:
    """The Twin of a settings field."""
    found = next((m for m in field.metadata if isinstance(m, Twin)), None)
    if found is None:
        raise TypeError("every settings field needs a Twin")
    return found


class OrchBaseSettings(BaseSettings):
    """The base of every settings model: frozen; flags over the environment; errors as one sentence."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    #: field given (by a flag) -> fields whose variables it replaces (left at their defaults, not read).
    REPLACES: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (passed as keyword arguments) first, then the environment: no .env file, no secrets directory."""
        return init_settings, _EnvSource(settings_cls)

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Self:
        """The settings from `flags` (field name -> value; None = not given) over `env` (default os.environ).

        ConfigError naming the flag or variable if a value cannot be used.
        """
        given = {name: value for name, value in (flags or {}).items() if value is not None and name in cls.model_fields}
        cls.check_flags(given)
        values = dict(given)
        for name in given:
            for other in cls.REPLACES.get(name, ()):
                if other not in given and other in cls.model_fields:
                    values[other] = cls.model_fields[other].default
        token = _ENV.set(env)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(cls._explain(exc.errors()[0], given, os.environ if env is None else env)) from None
        finally:
            _ENV.reset(token)

    @classmethod
    def check_flags(cls, given: Mapping[str, Any]) -> None:
        """Refuse flags that cannot go together (ConfigError)."""

    @classmethod
    def check(cls, name: str, value: Any) -> Any:
        """`value` checked as the setting `name`, as given in code; ConfigError saying what is wrong."""
        try:
            return _adapter(cls, name).validate_python(value, strict=True)
        except ValidationError as exc:
            raise ConfigError(problem_text(cls.model_fields[name], exc.errors()[0], value, "code")) from None

    @classmethod
    def _explain(cls, error: ErrorDetails, given: Mapping[str, Any], env: Mapping[str, str]) -> str:
        if not error["loc"]:  # a rule of the whole model: its own sentence
            return str(error.get("ctx", {}).get("error", error["msg"]))
        name = str(error["loc"][0])
        field = cls.model_fields[name]
        if name in given:
            return problem_text(field, error, given[name], "flag")
        return problem_text(field, error, env.get(twin(field).env), "env")

    @classmethod
    def default_text(cls, name: str) -> str:
        """The help line's default: `(default: VAR or value)`."""
        field = cls.model_fields[name]
        env = twin(field).env
        return f"(default: {env})" if field.default in (None, ()) else f"(default: {env} or {field.default})"


@functools.cache
def _adapter(model: type[OrchBaseSettings], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    args = (field.annotation, *field.metadata)  # the field's type with its constraints and validators
    return TypeAdapter(cast(Any, Annotated)[args])


_WHOLE = ("int_parsing", "int_from_float", "int_type")
_NUMBER = ("float_parsing", "float_type", "finite_number")
_RANGE = ("greater_than_equal", "greater_than", "less_than_equal", "less_than")


def bounds_text(field: FieldInfo) -> str:
    """The range of a number field, as advice: `1..65535`, `1 or more`, `a positive number`."""
    low = next((m.ge for m in field.metadata if isinstance(m, Ge)), None)
    above = next((m.gt for m in field.metadata if isinstance(m, Gt)), None)
    high = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    if above is not None:
        return "a positive number" if above == 0 else f"a number above {above}"
    if low is not None and high is not None:
        return f"{low}..{high}"
    return f"{low} or more" if low is not None else "a number"


def _choices(field: FieldInfo) -> tuple[str, ...]:
    annotation = field.annotation
    for arg in (annotation, *get_args(annotation)):
        if getattr(arg, "__origin__", None) is Literal:
            return tuple(str(c) for c in get_args(arg))
    return ()


def _either(words: tuple[str, ...]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def problem_text(field: FieldInfo, error: ErrorDetails, raw: Any, source: Literal["flag", "env", "code"]) -> str:
    """The one-line error for a value of `field` that failed `error`, from a flag, a variable or code.

    A problem with the value's form reads `REDIS_PORT='lots' is not a whole number; use 1..65535`
    (`argument --port: 0 is out of range; use 1..65535` for a flag, `Redis port 0 is …` in code); a rule
    with its own sentence reads `ORCH_NAMESPACE: invalid namespace 'a b': use …`.
    """
    t = twin(field)
    kind = error["type"]
    problem: str | None = None
    sentence: str | None = None
    if kind in _WHOLE:
        problem = f"is not a whole number; use {bounds_text(field)}"
    elif kind in _NUMBER:
        problem = f"is not a number; use {bounds_text(field)}"
    elif kind in _RANGE:
        problem = f"is out of range; use {bounds_text(field)}"
    elif kind == "literal_error":
        flag = f"{t.flags[0]} " if t.flags and source != "code" else ""
        sentence = f"unknown {t.what} {shown(raw)}: use {flag}{_either(_choices(field))}"
    elif kind == "value_error" and not isinstance(error.get("ctx", {}).get("error"), ValueProblem):
        sentence = str(error["ctx"]["error"])
    else:
        problem = str(error.get("ctx", {}).get("error", error["msg"]))
    value = str(raw) if kind in _RANGE else shown(raw)
    flag = t.flags[0] if t.flags else t.env
    if sentence is not None:
        return {"flag": f"argument {flag}: {sentence}", "env": f"{t.env}: {sentence}", "code": sentence}[source]
    return {
        "flag": f"argument {flag}: {value} {problem}",
        "env": f"{t.env}={shown(raw)} {problem}",
        "code": f"{t.what} {value} {problem}",
    }[source]
