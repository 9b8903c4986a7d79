"""Plain OpenAI calls through `Tensoras`, then what Tensoras adds to models and usage.

    TENSORAS_API_KEY=tns_... python examples/quickstart.py
"""

from tensoras import Tensoras

client = Tensoras()  # TENSORAS_BASE_URL, or http://127.0.0.1:8080/v1

chat = client.chat.completions.create(
    model="smollm2",
    temperature=0,
    max_tokens=32,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
)
print(chat.choices[0].message.content)

embeddings = client.embeddings.create(model="all-minilm-l6-v2", input=["cat", "kitten"])
print(len(embeddings.data[0].embedding), "dimensions")

for model in client.models.list():
    print(model.id, model.kind, model.context_length, model.aliases)

report = client.usage.retrieve(group_by=["model"])
for bucket in report.data:
    print(bucket.model, bucket.requests, bucket.input_tokens, bucket.output_tokens)
print("total cost:", report.total.cost_usd)
