"""Tool functions: a Python function the model (or `POST /v1/functions/{name}/call`) calls
with a JSON object of arguments.

    from tensoras import tool

    @tool(description="Adds two numbers.",
          parameters={"type": "object",
                      "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                      "required": ["a", "b"]})
    def add(a, b):
        return {"sum": a + b}

    Tool = add   # componentize-py looks for the export class by this name

The arguments arrive as keyword arguments. A `str` result is passed on as is; anything
else is sent as JSON. Raise `InvalidArguments` when the arguments are wrong; any other
exception fails the call (its traceback goes to the function's logs).
"""

import inspect
import json
import sys
import traceback

from .errors import Error, InvalidArguments


def tool(description: str, parameters=None, name=None):
    """Turns a function into the class the `tool-function` world exports."""

    def wrap(fn):
        tool_name = name or fn.__name__
        schema = json.dumps(parameters or {"type": "object", "properties": {}})
        signature = inspect.signature(fn)

        class Tool:
            def describe(self):
                from wit_world.imports import types

                return types.ToolInfo(name=tool_name, description=description, parameters=schema)

            def call(self, arguments: str) -> str:
                from componentize_py_types import Err
                from wit_world.imports import types

                try:
                    args = json.loads(arguments) if arguments.strip() else {}
                    if not isinstance(args, dict):
                        raise InvalidArguments("the arguments must be a JSON object")
                    signature.bind(**args)
                except (ValueError, TypeError) as e:  # bad JSON, or names the function lacks
                    raise Err(types.ToolError_InvalidArguments(str(e))) from None
                try:
                    result = fn(**args)
                except InvalidArguments as e:
                    raise Err(types.ToolError_InvalidArguments(str(e))) from None
                except Error as e:
                    raise Err(types.ToolError_Failed(str(e))) from None
                except Exception as e:  # a bug in the tool: the caller gets the message
                    traceback.print_exc(file=sys.stderr)
                    raise Err(types.ToolError_Failed(f"{type(e).__name__}: {e}")) from None
                return result if isinstance(result, str) else json.dumps(result)

        Tool.__name__ = Tool.__qualname__ = tool_name
        Tool.__doc__ = description
        Tool.function = staticmethod(fn)
        return Tool

    return wrap


__all__ = ["tool"]
