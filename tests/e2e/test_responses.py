"""End to end: the Responses API (issue #22, part 2) through the official `openai` Python SDK:
text and message input, instructions, streamed events that reassemble to the non-streamed
text, a function-tool round trip, `text.format` json_schema, `previous_response_id` carrying
the conversation (and `store: false` keeping nothing), GET/DELETE of a stored response, the
`file_search` tool over a knowledge base (the same grounded answer as `knowledge_bases` on
chat, with `file_citation` annotations), and OpenAI-shaped errors naming the Responses field. Greedy (temperature 0) where outputs are
compared; a few seeds at temperature 0.8 where only the shape is."""

import json

import openai
import pytest

from conftest import Server, new_key
from kbs import make_kb

CHAT = "smollm2-135m-instruct"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# Facts no model can know, one per file.
DOCS = {
    "vault.txt": b"Security memo. The access code for the Zephyr vault is 4417. Only two people know it.",
    "ferry.md": b"# Ferry timetable\n\nThe ferry to Kelpie Island leaves from Pier 9 at 7:40 every morning.\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("responses") / "data", new_key()).start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)


def test_text_in_text_out_matches_chat_completions(client):
    r = client.responses.create(model=CHAT, input="What is the capital of France?", max_output_tokens=16, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.status in ("completed", "incomplete")
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    chat = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=16, temperature=0
    )
    # The same generation as the chat handler: one core, not a second path.
    assert r.output_text == chat.choices[0].message.content
    assert r.usage.input_tokens == chat.usage.prompt_tokens and r.usage.output_tokens == chat.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_instructions_and_message_items(client):
    r = client.responses.create(
        model=CHAT,
        instructions="You answer in one short sentence.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"},
        ],
        max_output_tokens=12,
        temperature=0,
    )
    assert r.output_text and r.instructions == "You answer in one short sentence."
    cut = client.responses.create(model=CHAT, input="Tell me a long story.", max_output_tokens=3)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage.output_tokens == 3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_streamed_events_reassemble_to_the_text(client, seed):
    # `seed` is a Tensoras extension here (the Responses API has none): sent as an extra field.
    args = dict(model=CHAT, input="Write a sentence about the sea.", max_output_tokens=20, temperature=0.8,
                extra_body={"seed": seed})
    whole = client.responses.create(**args)
    events = list(client.responses.create(stream=True, **args))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text  # the same seed, the same text
    done = events[-1].response
    assert done.output_text == text and done.usage.output_tokens == whole.usage.output_tokens
    assert next(e for e in events if e.type == "response.output_text.done").text == text


def test_a_function_tool_round_trip(client):
    first = client.responses.create(
        model=CHAT,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
    )
    calls = [o for o in first.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id
    args = json.loads(calls[0].arguments)
    assert isinstance(args["city"], str)
    second = client.responses.create(
        model=CHAT,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 24 C"}],
        tools=[WEATHER],
        tool_choice="none",  # an answer now, not another call
        max_output_tokens=24,
        temperature=0,
    )
    assert second.previous_response_id == first.id and second.output_text
    # The model was given the question, its call and the call's output, in that order.
    kinds = [(i.type, getattr(i, "call_id", None)) for i in client.responses.input_items.list(second.id).data]
    assert kinds == [("message", None), ("function_call", calls[0].call_id), ("function_call_output", calls[0].call_id)]
    # Streamed, the call arrives as argument deltas that add up to the call.
    events = list(client.responses.create(model=CHAT, input="Weather in Oslo?", tools=[WEATHER],
                                          tool_choice="required", temperature=0, stream=True))
    fragments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    call = next(o for o in events[-1].response.output if o.type == "function_call")
    assert fragments == call.arguments and json.loads(fragments)["city"]


def test_text_format_json_schema_parses(client):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = client.responses.create(
        model=CHAT,
        input="Invent a person.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
        temperature=0,
    )
    person = json.loads(r.output_text)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    assert r.text.format.type == "json_schema"


def test_previous_response_id_carries_the_conversation(client):
    first = client.responses.create(model=CHAT, input="My name is Zorblax. Remember it.", max_output_tokens=12, temperature=0)
    second = client.responses.create(model=CHAT, previous_response_id=first.id, input="What is my name?",
                                     max_output_tokens=12, temperature=0)
    items = client.responses.input_items.list(second.id).data
    texts = [json.dumps(i.model_dump()) for i in items]
    # Turn 1's message and answer come before turn 2's question.
    assert "Zorblax" in texts[0] and first.output_text in texts[1] and "What is my name?" in texts[-1]
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(second.id).output_text == second.output_text

    # store: false keeps nothing to continue or retrieve.
    gone = client.responses.create(model=CHAT, input="hi", max_output_tokens=2, store=False)
    assert gone.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(gone.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model=CHAT, previous_response_id=gone.id, input="and?")
    assert e.value.body["param"] == "previous_response_id"

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_file_search_answers_from_the_knowledge_base_with_an_annotation(server, client):
    kb_id, files = make_kb(server, "facts", DOCS)
    question = "What is the access code for the Zephyr vault?"
    args = dict(model=CHAT, input=question, temperature=0, max_output_tokens=48,
                tools=[{"type": "file_search", "vector_store_ids": [kb_id]}])
    r = client.responses.create(include=["file_search_call.results"], **args)
    search, message = r.output[0], r.output[1]
    assert search.type == "file_search_call" and search.status == "completed" and search.queries == [question]
    assert search.results[0].filename == "vault.txt" and search.results[0].file_id == files["vault.txt"]
    assert "4417" in search.results[0].text and search.results[0].score > 0
    assert "4417" in r.output_text, r.output_text
    cited = message.content[0].annotations
    assert cited[0].type == "file_citation" and cited[0].file_id == files["vault.txt"], cited
    assert cited[0].filename == "vault.txt" and 0 <= cited[0].index <= len(r.output_text)
    # The grounding is the RAG handler's: the same prompt, the same answer.
    chat = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": question}], temperature=0,
                                          max_tokens=48, extra_body={"knowledge_bases": [kb_id]})
    assert r.output_text == chat.choices[0].message.content
    assert r.usage.input_tokens == chat.usage.prompt_tokens
    assert client.responses.create(**args).output[0].results is None  # results only when included

    # Streamed: the search's events first, then the same text, its annotations announced.
    events = list(client.responses.create(stream=True, **args))
    kinds = [e.type for e in events]
    assert kinds[2:7] == ["response.output_item.added", "response.file_search_call.in_progress",
                          "response.file_search_call.searching", "response.file_search_call.completed",
                          "response.output_item.done"], kinds
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == r.output_text
    added = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert added and added[0].annotation.file_id == files["vault.txt"]
    assert events[-1].response.output[1].content[0].annotations[0].filename == "vault.txt"

    # A follow-up over the stored conversation (search item included) searches again.
    later = client.responses.create(model=CHAT, previous_response_id=r.id, input="Where does the ferry to Kelpie Island leave from?",
                                    tools=[{"type": "file_search", "vector_store_ids": [kb_id], "max_num_results": 1}],
                                    temperature=0, max_output_tokens=48)
    assert "pier 9" in later.output_text.lower(), later.output_text
    assert [a.filename for a in later.output[1].content[0].annotations] == ["ferry.md"]
    # tool_choice none: no search, no citations.
    plain = client.responses.create(tool_choice="none", **args)
    assert [o.type for o in plain.output] == ["message"] and plain.output[0].content[0].annotations == []

    # Another tenant's knowledge base does not exist for this key; filters the KBs cannot express are named.
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(**{**args, "tools": [{"type": "file_search", "vector_store_ids": ["kb_missing"]}]})
    assert e.value.body["param"] == "tools[0].vector_store_ids" and e.value.body["code"] == "knowledge_base_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(**{**args, "tools": [{"type": "file_search", "vector_store_ids": [kb_id],
                                                    "filters": {"type": "or", "filters": []}}]})
    assert e.value.body["param"] == "tools[0].filters.type"
    # An attribute filter reaches the search: only the ferry's file matches.
    filtered = client.responses.create(include=["file_search_call.results"], **{**args, "tools": [
        {"type": "file_search", "vector_store_ids": [kb_id], "filters": {"type": "eq", "key": "filename", "value": "ferry.md"}}]})
    assert {x.filename for x in filtered.output[0].results} == {"ferry.md"}


def test_errors_name_the_responses_field(client):
    cases = [
        (dict(model=CHAT, input="hi", max_output_tokens=0), "max_output_tokens"),
        (dict(model=CHAT, input=[{"type": "input_image", "image_url": "x"}]), "input[0].type"),
        (dict(model=CHAT, input="hi", tools=[{"type": "web_search"}]), "tools[0].type"),
        (dict(model=CHAT, input="hi", text={"format": {"type": "json_schema", "name": "x", "schema": {"type": 5}}}),
         None),
        (dict(model="no-such-model", input="hi"), "model"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.APIStatusError) as e:
            client.responses.create(**kwargs)
        assert e.value.status_code in (400, 404), e.value
        if param:
            assert e.value.body["param"] == param, e.value.body
