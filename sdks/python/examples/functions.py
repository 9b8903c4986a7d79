"""Deploys a tool function from a `.wasm` component, calls it, and reads its versions and logs.

    TENSORAS_API_KEY=tns_... python examples/functions.py build/functions/calc.wasm
"""

import sys

from tensoras import Tensoras

client = Tensoras()
wasm = sys.argv[1] if len(sys.argv) > 1 else "build/functions/calc.wasm"

fn = client.functions.deploy(wasm, name="calc", kind="tool", limits={"timeout_ms": 5000})
print(f"deployed {fn.name} v{fn.version} ({fn.size_bytes} bytes)")

result = client.functions.call("calc", {"expression": "12345 * 678"})
print(result.output, f"in {result.duration_ms:.1f} ms")

for version in client.functions.versions("calc"):
    print("version", version.version, "active" if version.active else "")

logs = client.functions.logs("calc", limit=10)
print(logs.stats.invocations, "invocations,", logs.stats.errors, "errors")

# The model can call it too: the server runs the tool and answers with its result.
chat = client.chat.completions.create(
    model="smollm2",
    temperature=0,
    tool_choice="required",
    messages=[{"role": "user", "content": "Use the calculator: what is 12345 * 678?"}],
    # A deployed tool is named with Tensoras' `tensoras_function` tool type.
    extra_body={"tools": [{"type": "tensoras_function", "tensoras_function": {"name": "calc"}}]},
)
print(chat.choices[0].message.content)

client.functions.delete("calc")
