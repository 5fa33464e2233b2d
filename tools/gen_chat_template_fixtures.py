#!/usr/bin/env python3
"""Chat-template fixtures for Tests/JinjaTests, rendered by transformers itself.

Writes Tests/Fixtures/chat_templates/<name>.json = {generator, template, special_tokens, cases:
[{name, messages, add_generation_prompt, tools?, extra?, expected | error}]} and units.json (small
templates for the lexer, parser, every filter, test and method, with the output of the jinja2
environment transformers compiles: ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, raise_exception, strftime_now, tojson with ensure_ascii=False).

The real templates (SmolLM2-135M-Instruct, Qwen2.5-Coder-Instruct) come from the tokenizer fixtures
in Tests/Fixtures/tokenizers/ and are rendered with `AutoTokenizer.apply_chat_template(...,
tokenize=False)`; the others with transformers' `render_jinja_template`, the function
apply_chat_template calls, after the same null-key normalisation apply_chat_template does.

Usage: python3 tools/gen_chat_template_fixtures.py   (no network needed)
"""

import copy
import json
import os
import sys
import warnings

import jinja2
import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "chat_templates")
TOKENIZERS = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers")

GENERATOR = {
    "script": "tools/gen_chat_template_fixtures.py",
    "jinja2": jinja2.__version__,
    "transformers": transformers.__version__,
    "python": sys.version.split()[0],
}

# ---------------------------------------------------------------------------------------------
# Conversations

SYS = {"role": "system", "content": "You are a terse assistant."}
U1 = {"role": "user", "content": "What is 2+2?"}
A1 = {"role": "assistant", "content": "4."}
U2 = {"role": "user", "content": "And 3+3?"}
A2 = {"role": "assistant", "content": "6."}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Zürich"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
]

CALL_WEATHER = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}}
CALL_ADD = {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 40}}}

CONVERSATIONS = {
    "system_user": [SYS, U1],
    "user_only": [U1],
    "multi_turn": [SYS, U1, A1, U2],
    "multi_turn_no_system": [U1, A1, U2],
    "assistant_last": [SYS, U1, A1],
    "assistant_last_no_system": [U1, A1],
    "long": [SYS, U1, A1, U2, A2, {"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "You're welcome."}],
    "empty_content": [{"role": "user", "content": ""}],
    "empty_system": [{"role": "system", "content": ""}, U1],
    "jinja_looking": [{"role": "user", "content": "Print {{ messages }} and {% if x %}y{% endif %} {# not a comment #} literally"}],
    "unicode": [
        {"role": "system", "content": "Réponds en français. 日本語も OK."},
        {"role": "user", "content": "emoji 🚀👩‍💻, combining e\u0301, RTL שלום, zero-width\u200bspace, NBSP\u00a0here"},
    ],
    "whitespace": [{"role": "user", "content": "  leading and trailing  \n\n\tindented\r\nCRLF line\n"}],
    "quotes_and_backslashes": [{"role": "user", "content": "She said \"hi\" and it's a back\\slash \\n not a newline"}],
    "special_tokens_in_content": [{"role": "user", "content": "<|im_start|>assistant\n<|im_end|> <s> </s> [INST]"}],
    "no_messages": [],
    "null_content_dropped": [{"role": "user", "content": None}],
    "content_parts": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}],
    "extra_keys": [{"role": "user", "content": "hi", "name": "ada", "reasoning_content": None}],
    "consecutive_users": [U1, U2],
    "system_only": [SYS],
    "reasoning_in_content": [U1, {"role": "assistant", "content": "<think>\nadd 2 and 2\n</think>\n\n4."}, U2],
    "reasoning_fields": [U1, {"role": "assistant", "reasoning": "2+2 is 4", "content": "4."},
                         {"role": "assistant", "content": "ok", "thinking": "hm", "reasoning_content": None}],
    "assistant_prefix": [U1, {"role": "assistant", "content": "The answer is "}],
    "content_parts_text": [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image"}]}],
}

TOOL_CONVERSATIONS = {
    "tools_system_user": ([SYS, U1], TOOLS),
    "tools_user_only": ([{"role": "user", "content": "Weather in Zürich?"}], TOOLS),
    "tools_call_and_response": (
        [
            {"role": "user", "content": "Weather in Zürich?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL_WEATHER]},
            {"role": "tool", "name": "get_weather", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
        ],
        TOOLS,
    ),
    "tools_two_calls_two_responses": (
        [
            SYS,
            {"role": "user", "content": "Weather in Zürich, and 2+40?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL_WEATHER, CALL_ADD]},
            {"role": "tool", "name": "get_weather", "content": "21 C"},
            {"role": "tool", "name": "add", "content": "42"},
            {"role": "assistant", "content": "It is 21 C; 2+40 = 42."},
        ],
        TOOLS,
    ),
    "tool_call_without_function_wrapper": (
        [
            {"role": "user", "content": "Add 2 and 40"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 40}}]},
            {"role": "tool", "content": "42"},
        ],
        TOOLS,
    ),
    "tool_messages_without_tools": (
        [
            {"role": "user", "content": "Add 2 and 40"},
            {"role": "assistant", "content": None, "tool_calls": [CALL_ADD]},
            {"role": "tool", "content": "42"},
        ],
        None,
    ),
}

def random_conversations(count, seed=31):
    """Random role sequences, contents and tool calls, so every branch of the real templates meets
    inputs no one picked (including ones the templates reject)."""
    import random
    rng = random.Random(seed)
    contents = ["", " ", "Hi", "  spaced  ", "multi\nline\n", "tab\tsep", "ünïcode ✓ 🚀", "{{ not_a_var }}",
                "{% if %}", "'quotes' \"double\"", "back\\slash", "<|im_end|>", "</think>x", "a" * 300]
    conversations = {}
    for i in range(count):
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": "system", "content": rng.choice(contents)})
        for _ in range(rng.randint(1, 6)):
            role = rng.choice(["user", "user", "assistant", "assistant", "tool", "system"])
            message = {"role": role, "content": rng.choice(contents)}
            if role == "assistant" and rng.random() < 0.3:
                call = rng.choice([CALL_WEATHER, CALL_ADD, {"name": "add", "arguments": {"a": 1, "b": rng.randint(0, 9)}},
                                   {"type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}])
                message["tool_calls"] = [call] * rng.randint(1, 2)
                if rng.random() < 0.5:
                    message["content"] = None
            messages.append(message)
        tools = TOOLS if rng.random() < 0.4 else None
        conversations[f"random_{i:02d}"] = (messages, tools)
    return conversations


TOOL_CONVERSATIONS.update(random_conversations(30))

# ---------------------------------------------------------------------------------------------
# Templates we write ourselves

# Llama-2-chat's format: [INST] turns, <<SYS>> folded into the first user turn, strict alternation.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# Llama-3-Instruct's format: header ids, trimmed content, bos before the first turn.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# A multi-line template in the style of Llama-3.1's tool-calling one (written for these tests):
# defaults for missing variables, namespace state, tojson(indent=4), items, reject, -}} control.
LLAMA31_STYLE = r"""{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{#- Pull the system message out so it can go first. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none %}
    {{- "You have these functions:\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- set ns = namespace(tool_turns=0) %}
{%- for message in messages %}
    {%- if not (message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- set tool_call = message.tool_calls[0].function if message.tool_calls[0].function is defined else message.tool_calls[0] %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {%- for name, value in tool_call.arguments | items %}
            {{- " " ~ name ~ "=" ~ value }}
        {%- endfor %}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" %}
        {%- set ns.tool_turns = ns.tool_turns + 1 %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or (message.content is iterable and message.content is not string) %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if ns.tool_turns > 0 %}{{ "[" ~ ns.tool_turns ~ " tool turns]" }}{% endif %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# Hand-written templates that exercise the feature list with trim_blocks/lstrip_blocks layout.
FEATURES_LOOP = """{# Loop variables, filters on loops, else branches, break/continue #}
{% for message in messages %}
  {% if loop.first %}[first of {{ loop.length }}]{% endif %}
  {{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }} {{ message.role | upper }}:
    {{- ' ' + message['content'] | trim }}
  {% if not loop.last %}(next: {{ loop.nextitem.role }}){% endif %}
  {% if loop.previtem is defined %}(prev: {{ loop.previtem['role'] }}){% endif %}
{% endfor %}
{% for m in messages if m.role == 'user' %}
U{{ loop.index }}={{ m.content|length }}{{ "," if not loop.last }}
{% else %}
no user messages
{% endfor %}
{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}{% if loop.index > 3 %}{% break %}{% endif %}<{{ m.role[0] }}>{% endfor %}

{% for m in [] %}x{% else %}empty-else{% endfor %}
{%- if add_generation_prompt %}

ASSISTANT:
{%- endif %}"""

FEATURES_STATE = """{%- set ns = namespace(count=0, last_role=none, roles=[]) -%}
{%- for message in messages -%}
    {%- set ns.count = ns.count + 1 -%}
    {%- set ns.roles = ns.roles + [message.role] -%}
    {%- set ns.last_role = message.role -%}
    {%- set local = 'never leaks' -%}
{%- endfor -%}
count={{ ns.count }} last={{ ns.last_role }} roles={{ ns.roles | join('|') }} local={{ local is defined }}
{% set block_capture %}
  captured {{ messages | length }} messages
{% endset %}
[{{ block_capture | trim }}]
{%- set a, b = 'x', 'y' %} {{ a ~ b }}
{%- set pair = ('k', 'v') %}{% set k, v = pair %} {{ k }}={{ v }}
{% macro turn(role, text, suffix='!') -%}
<{{ role }}>{{ text }}{{ suffix }}</{{ role }}>
{%- endmacro %}
{% for m in messages %}{{ turn(m.role, m.content) }}{{ turn(m.role, '', suffix='?') if loop.last }}{% endfor %}
{% generation %}generated {{ add_generation_prompt }}{% endgeneration %}
{% with x = messages | length %}with={{ x * 2 }}{% endwith %}
{%+ if true %}  kept-indent{% endif %}
   {%- if true %}  stripped-left{% endif %}"""

FEATURES_EXPR = """{{ messages[0]['role'] }} {{ messages[0].role }} {{ messages[-1]['content'][::-1] }} {{ messages[1:] | length }}
{{ 'a' ~ 1 ~ none ~ true }} {{ 1 + 2 * 3 - 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2.5 * 2 }}
{{ 'yes' if messages | length > 1 else 'no' }} {{ 'user' in messages | map(attribute='role') | list }} {{ 'zzz' not in 'abc' }}
{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(', ') }}
{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }}
{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) | first }} {{ ['b', 'A', 'a'] | unique | list }} {{ [1, 2, 3] | reverse | list }} {{ [1, 2] | last }}
{{ {'b': 1, 'a': [1, 2.5, none, true, 'x"y']} | tojson }} {{ {'k': 'é'} | tojson(indent=2) }}
{{ messages[0].content.startswith('You') }} {{ messages[0].content.endswith(('x', '.')) }} {{ '  pad  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split() }}
{{ 'Hello {}! {name}'.format('world', name='Graft') }} {{ 'mixed Case'.title() }} {{ 'x-y'.replace('-', '+') }} {{ '%s=%d' | format('n', 3) }}
{{ {'a': 1, 'b': 2}.items() | list }} {{ {'a': 1}.get('a') }} {{ {'a': 1}.get('zz', 'dflt') }} {{ {'a': 1, 'b': 2} | items | list }} {{ {'x': 1}.keys() | list }} {{ {'x': 1}.values() | list }}
{{ undefined_thing }}|{{ undefined_thing | default('fallback') }}|{{ '' | default('empty', true) }}|{{ none }}|{{ none is none }}|{{ 3 is odd }}|{{ 'x' is string }}|{{ {} is mapping }}
{{ 'abc'[1] }} {{ 'abc'[-1] }} {{ [1,2,3][1:] }} {{ [1,2,3][:-1] }} {{ (1, 2) }} {{ (1,) }} {{ range(3) | list }} {{ range(1, 10, 3) | list }}
{{ 3.14159 | round(2) }} {{ 2.5 | round }} {{ -3 | abs }} {{ '42' | int + 1 }} {{ 'x' | int }} {{ 3 | string ~ '!' }} {{ 'hello world' | capitalize }} {{ 'hello world' | title }}
{{ "line1\\nline2" | indent(2) }} {{ "line1\\nline2" | indent(2, true) }} {{ 'AbC' | lower }} {{ 'q' | upper }} {{ '<b>' | safe }} {{ [1, 2, 3] | sum }} {{ [4, 2, 8] | max }} {{ [4, 2, 8] | min }}
"""

# Templates in the style of other Llama-family releases, written for these tests: a Mistral-like
# [INST] format with tool calls and strict alternation, a Gemma-like turn format that renames
# roles, a DeepSeek-R1-like format that strips reasoning, and a Hermes-like tool prompt built by a
# recursive macro.
MISTRAL_STYLE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr('role', 'equalto', 'user') | list %}
{{- bos_token }}
{%- for message in loop_messages | rejectattr('role', 'equalto', 'tool') %}
    {%- if message['role'] == 'user' %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- '[AVAILABLE_TOOLS] [' }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != 'return' %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val | tojson }}
                    {%- endif %}
                    {%- if not loop.last %}{{- ', ' }}{%- endif %}
                {%- endfor %}
                {{- '}}' }}
                {%- if not loop.last %}{{- ', ' }}{%- else %}{{- ']' }}{%- endif %}
            {%- endfor %}
            {{- '[/AVAILABLE_TOOLS]' }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- '[TOOL_CALLS] [' }}
        {%- for tool_call in message.tool_calls %}
            {%- set call = tool_call.function if tool_call.function is defined else tool_call %}
            {{- '{"name": "' + call.name + '", "arguments": ' + call.arguments | tojson + '}' }}
            {%- if not loop.last %}{{- ', ' }}{%- else %}{{- ']' + eos_token }}{%- endif %}
        {%- endfor %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] | trim + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

GEMMA_STYLE = """{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"""

DEEPSEEK_STYLE = """{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{ '<|User|>' + message['content'] }}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is defined and message['content'] %}{% set content = message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}{{ '<|Assistant|>' + content + '<|end▁of▁sentence|>' }}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{{ '<|tool▁output▁begin|>' + message['content'] + '<|tool▁output▁end|>' }}{%- endif %}{%- endfor -%}{% if add_generation_prompt and not ns.is_tool %}{{ '<|Assistant|><think>\n' }}{% endif %}"""

HERMES_STYLE = """{%- macro json_to_python_type(json_spec) %}
{%- set basic_type_map = {
    "string": "str",
    "number": "float",
    "integer": "int",
    "boolean": "bool"
} %}
{%- if basic_type_map[json_spec.type] is defined %}
    {{- basic_type_map[json_spec.type] }}
{%- elif json_spec.type == "array" %}
    {{- "list[" +  json_to_python_type(json_spec|items) + "]" }}
{%- elif json_spec.type == "object" %}
    {%- if json_spec.additionalProperties is defined %}
        {{- "dict[str, " + json_to_python_type(json_spec.additionalProperties) + ']' }}
    {%- else %}
        {{- "dict" }}
    {%- endif %}
{%- elif json_spec.enum is defined %}
    {{- "Literal[" + json_spec.enum | map("tojson") | join(", ") + "]" }}
{%- else %}
    {{- "Any" }}
{%- endif %}
{%- endmacro %}
{{- bos_token }}
{%- if tools %}
    {{- '<|im_start|>system\nYou are a function calling AI model. Here are the available tools: <tools> ' }}
    {%- for tool in tools %}
        {%- if tool.function is defined %}
            {%- set tool = tool.function %}
        {%- endif %}
        {{- '{"type": "function", "function": ' }}
        {{- '{"name": "' + tool.name + '", ' }}
        {{- '"description": "' + tool.name + '(' }}
        {%- for param_name, param_fields in tool.parameters.properties|items %}
            {{- param_name + ": " + json_to_python_type(param_fields) }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- endif %}
        {%- endfor %}
        {{- ")" }}
        {%- if tool.description is defined %}
            {{- " - " + tool.description }}
        {%- endif %}
        {{- '", "parameters": ' + tool.parameters | tojson + '}}' }}
        {%- if not loop.last %}
            {{- "\n" }}
        {%- endif %}
    {%- endfor %}
    {{- " </tools><|im_end|>\n" }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or message.role == "system" or (message.role == "assistant" and message.tool_calls is not defined) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- for tool_call in message.tool_calls %}
            {{- '\n<tool_call>\n' }}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '{' }}
            {{- '"name": "' }}
            {{- tool_call.name }}
            {{- '"' }}
            {%- if tool_call.arguments is defined %}
                {{- ', ' }}
                {{- '"arguments": ' }}
                {{- tool_call.arguments|tojson }}
            {%- endif %}
            {{- '}' }}
            {{- '\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.previtem and loop.previtem.role != "tool" %}
            {{- '<|im_start|>tool\n' }}
        {%- endif %}
        {{- '<tool_response>\n' }}
        {{- message.content }}
        {%- if not loop.last %}
            {{- '\n</tool_response>\n' }}
        {%- else %}
            {{- '\n</tool_response>' }}
        {%- endif %}
        {%- if not loop.last and loop.nextitem.role != "tool" %}
            {{- '<|im_end|>' }}
        {%- elif loop.last %}
            {{- '<|im_end|>' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# Prints what the template sees of each message, to pin the message normalisation.
ECHO = """{% for message in messages %}{{ message | tojson }}|{{ message.reasoning_content }}|{{ message.content is string }}
{% endfor %}"""

FEATURE_TEMPLATES = {
    "echo": ECHO,
    "features_loop": FEATURES_LOOP,
    "features_state": FEATURES_STATE,
    "features_expr": FEATURES_EXPR,
}

# ---------------------------------------------------------------------------------------------
# Unit cases: (name, template, context). Expected output or error comes from jinja2.

MSGS = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Yo"}]
UNITS = [
    # Lexer: whitespace control, trim_blocks, lstrip_blocks, comments, raw, newlines
    ("lex_plain", "just text", {}),
    ("lex_trailing_newline_dropped", "text\n", {}),
    ("lex_two_trailing_newlines", "text\n\n", {}),
    ("lex_crlf_normalized", "a\r\nb\rc\n", {}),
    ("lex_trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("lex_lstrip_blocks", "  {% if true %}\n  yes\n  {% endif %}\nafter", {}),
    ("lex_lstrip_not_variables", "  {{ 'x' }}\n", {}),
    ("lex_lstrip_mid_line", "a  {% if true %}b{% endif %}", {}),
    ("lex_lstrip_after_var", "{{ 'v' }}  {% if true %}b{% endif %}", {}),
    ("lex_lstrip_tabs", "\t \t{% if true %}x{% endif %}", {}),
    ("lex_minus_left", "a   \n  {%- if true %}b{% endif %}", {}),
    ("lex_minus_right", "{% if true -%}  \n\n  b{% endif %}", {}),
    ("lex_minus_variable", "a  {{- 'b' -}}  c", {}),
    ("lex_plus_left_keeps_indent", "  {%+ if true %}x{% endif %}", {}),
    ("lex_plus_right_keeps_newline", "{% if true +%}\nx{% endif %}", {}),
    ("lex_comment", "a{# comment #}b", {}),
    ("lex_comment_trim", "a\n  {# comment #}\nb", {}),
    ("lex_comment_minus", "a  {#- c -#}  b", {}),
    ("lex_comment_multiline", "a{# line1\nline2 #}b", {}),
    ("lex_raw", "{% raw %}{{ not rendered }}{% endraw %}", {}),
    ("lex_raw_trim", "  {% raw %}\n{{ x }}\n  {% endraw %}\nz", {}),
    ("lex_string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\x41\\u00e9\\U0001F680' }}", {}),
    ("lex_string_double_quotes", '{{ "say \\"hi\\"" }}', {}),
    ("lex_string_unknown_escape", "{{ 'a\\qb' }}", {}),
    ("lex_adjacent_strings", "{{ 'a' 'b' \"c\" }}", {}),
    ("lex_numbers", "{{ 1_000 }} {{ 0x1F }} {{ 1.5e3 }} {{ 2E-2 }} {{ 10.0 }} {{ 0o17 }} {{ 0b101 }}", {}),
    ("lex_nested_braces", "{{ {'a': {'b': 1}} }}", {}),
    ("lex_braces_in_text", "a { b } {{ '}}' }} c {", {}),
    ("lex_unicode_text", "héllo {{ '世界' }} 🚀", {}),
    ("lex_block_newline_only_one", "{% if true %}\n\nx{% endif %}", {}),
    ("lex_lstrip_comment_line", "a\n   {# c #}\nb", {}),
    ("lex_end_minus_eats_all", "{% set x = 1 -%}\n\n   \t{{ x }}", {}),
    ("lex_line_starting_after_trim", "{% if true %}\n   {% if true %}x{% endif %}{% endif %}", {}),
    # Parser and expressions
    ("parse_precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ not true or true }} {{ not (true or true) }}", {}),
    ("parse_compare_chain", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }}", {}),
    ("parse_ternary", "{{ 'a' if true else 'b' }} {{ 'a' if false else 'b' }} [{{ 'a' if false }}] {{ 1 if false else 2 if false else 3 }}", {}),
    ("parse_filters_chain", "{{ '  Ab  ' | trim | lower | replace('a', 'x') }}", {}),
    ("parse_filter_precedence", "{{ -1 | abs }} {{ 1 + -2 | abs }} {{ 'a' ~ 'B' | lower }}", {}),
    ("parse_test_precedence", "{{ not x is defined }} {{ x is not defined }} {{ 4 is divisibleby 2 }} {{ 5 is divisibleby(2) }}", {}),
    ("parse_test_arg_sameas", "{{ none is sameas none }} {{ 1 is eq 1 }} {{ 1 is equalto 2 }} {{ 3 is gt 2 }}", {}),
    ("parse_in", "{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1, 2] }} {{ 'x' in none_list | default([]) }}", {}),
    ("parse_literals", "{{ [1, 'two', 3.0, none, true, false, True, None] }} {{ {'a': 1, 'b': (1, 2)} }} {{ () }} {{ [] }} {{ {} }}", {}),
    ("parse_trailing_commas", "{{ [1, 2,] }} {{ {'a': 1,} }} {{ (1, 2,) }} {{ range(3,) | list }}", {}),
    ("parse_print_tuple", "{{ 1, 2 }}", {}),
    ("parse_attr_number", "{{ items.0 }} {{ items.1.name }}", {"items": ["a", {"name": "n"}]}),
    ("parse_call_kwargs", "{{ dict(a=1, b='x') }} {{ namespace(x=1).x }}", {}),
    ("parse_nested_subscript", "{{ m[0]['content'][0:2] }} {{ m[-1].content[1:] }}", {"m": MSGS}),
    ("parse_slices", "{{ s[::2] }} {{ s[1:-1] }} {{ s[-2:] }} {{ s[::-1] }} {{ s[5:1:-2] }} {{ s[10:] }} {{ l[::-1] }} {{ t[1:] }}", {"s": "abcdefg", "l": [1, 2, 3], "t": [4, 5, 6]}),
    ("parse_if_elif_else", "{% for n in [1, 2, 3, 4] %}{% if n == 1 %}one{% elif n == 2 %}two{% elif n == 3 %}three{% else %}other{% endif %} {% endfor %}", {}),
    ("parse_nested_loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}{{ loop.index }};{% endfor %}", {}),
    ("parse_for_unpack", "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}{% for (i, j) in [(1, 2), (3, 4)] %}{{ i + j }}{% endfor %}", {}),
    ("parse_for_over_dict", "{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %}", {}),
    ("parse_for_over_string", "{% for c in 'héé' %}[{{ c }}]{% endfor %}", {}),
    ("parse_for_undefined", "{% for x in nothing %}x{% else %}nothing{% endfor %}", {}),
    ("parse_loop_cycle", "{% for i in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}", {}),
    ("parse_break_continue", "{% for i in range(10) %}{% if i is even %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("parse_loop_filter_length", "{% for i in range(10) if i % 3 == 0 %}{{ i }}:{{ loop.length }}:{{ loop.last }} {% endfor %}", {}),
    ("parse_set_scoping", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 10 %}{{ x }};{% endfor %}{{ x }}", {}),
    ("parse_set_in_if_leaks", "{% if true %}{% set y = 3 %}{% endif %}{{ y }}", {}),
    ("parse_set_iteration_fresh", "{% for i in range(3) %}{% if i == 0 %}{% set x = 5 %}{% endif %}[{{ x }}]{% endfor %}", {}),
    ("parse_set_tuple", "{% set a, b = [1, 2] %}{{ b }}{{ a }}{% set c = 1, 2 %}{{ c }}", {}),
    ("parse_set_block_filter", "{% set x | upper %}hello {{ 'w' }}{% endset %}{{ x }}", {}),
    ("parse_namespace", "{% set ns = namespace(a=1, b=[]) %}{% for i in range(3) %}{% set ns.a = ns.a * 2 %}{% set ns.b = ns.b + [i] %}{% endfor %}{{ ns.a }} {{ ns.b }}", {}),
    ("parse_namespace_dict_arg", "{% set ns = namespace({'x': 5}, y=6) %}{{ ns.x + ns.y }}", {}),
    ("parse_macro_defaults", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('A') }} {{ greet('B', 'Hi') }} {{ greet(greeting='Yo', name='C') }} [{{ greet() }}]", {}),
    ("parse_macro_sees_globals", "{% macro m() %}{{ x }}{% endmacro %}{% set x = 7 %}{{ m() }}", {}),
    ("parse_macro_varargs_kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}", {}),
    ("parse_call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ 1 + 1 }}{% endcall %}", {}),
    ("parse_filter_block", "{% filter upper %}shout {{ 'this' }}{% endfilter %}", {}),
    ("scope_load_before_store", "{{ a }}{% set a = 1 %}{{ a }}", {"a": "A"}),
    ("scope_macro_before_store", "{% macro m() %}{{ a }}{% endmacro %}{{ m() }}{% set a = 1 %}{{ m() }}", {"a": "A"}),
    ("scope_macro_no_store", "{% macro m() %}{{ a }}{% endmacro %}{{ m() }}", {"a": "A"}),
    ("scope_macro_store_in_if", "{% macro m() %}{{ a }}{% endmacro %}{% if false %}{% set a = 4 %}{% endif %}{{ m() }}", {"a": "A"}),
    ("scope_macro_store_if_else", "{% macro m() %}[{{ a }}]{% endmacro %}{{ m() }}{% if x %}{% set a = 1 %}{% else %}{% set a = 2 %}{% endif %}{{ m() }}", {"a": "A", "x": True}),
    ("scope_macro_store_all_branches", "{% macro m() %}[{{ a }}]{% endmacro %}{{ m() }}{% if x %}{% set a = 1 %}{% elif y %}{% set a = 3 %}{% else %}{% set a = 2 %}{% endif %}{{ m() }}", {"a": "A", "x": False, "y": True}),
    ("scope_macro_latest_value", "{% set a = 3 %}{% macro m() %}{{ a }}{% endmacro %}{% set a = 4 %}{{ m() }}", {"a": "A"}),
    ("scope_loop_reads_later_store", "{% for i in [1] %}[{{ a }}]{% endfor %}{% set a = 1 %}{{ a }}", {"a": "A"}),
    ("scope_loop_store_no_leak", "{% for i in [1] %}{{ a }}{% set a = 2 %}{{ a }}{% endfor %}{{ a }}", {"a": "A"}),
    ("scope_macro_in_loop_sees_outer", "{% macro m() %}{{ a }}{% endmacro %}{% for i in [1] %}{% set a = 5 %}{{ m() }}{% endfor %}", {"a": "A"}),
    ("scope_for_else_after_continue", "{% for x in [1] %}{% continue %}{% else %}E{% endfor %}|{% for x in [1, 2] %}{% if x == 2 %}{% continue %}{% endif %}{% else %}E{% endfor %}|{% for x in [1, 2] %}{% break %}{% else %}E{% endfor %}", {}),
    ("scope_for_else_own_frame", "{% for x in [] %}{% else %}{% set a = 9 %}{{ a }}{% endfor %}{{ a }}", {"a": "A"}),
    ("scope_call_block_sees_caller_scope", "{% macro m() %}{{ caller() }}{% endmacro %}{% set a = 1 %}{% call m() %}{{ a }}{% endcall %}", {"a": "A"}),
    ("scope_with_filter_set_blocks", "{% with %}{% set a = 2 %}{{ a }}{% endwith %}{{ a }}{% set x %}{% set a = 3 %}{{ a }}{% endset %}{{ x }}{{ a }}{% filter upper %}{% set a = 4 %}{{ a }}{% endfilter %}{{ a }}", {"a": "A"}),
    ("parse_with", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", {}),
    ("parse_generation", "{% generation %}gen {{ 1 }}{% endgeneration %}", {}),
    ("parse_raise_exception", "{% if true %}{{ raise_exception('Custom failure: ' ~ 42) }}{% endif %}", {}),
    ("parse_dict_global", "{{ dict(x=1) | tojson }}", {}),
    # Output of Python values
    ("str_values", "{{ none }} {{ true }} {{ false }} {{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-5 }} {{ 0.0001 }} {{ -0.0 }} {{ 3 / 2 }} {{ 4 / 2 }} {{ 10 ** 15 // 10 ** 5 }} {{ 2 ** 62 }}", {}),
    ("str_containers", "{{ ['a', \"it's\", 'say \"x\"', 'both \\' \"', 'nl\\n', 'tab\\t', '\\x01', 'é'] }} {{ {'k': [1, {'n': none}]} }} {{ ('a',) }}", {}),
    ("str_floats", "{% for x in xs %}{{ x }} {{ x | tojson }}|{% endfor %}", {"xs": [0.5, 1.0, 100.0, 123456789.123, 1e15, 9999999999999998.0, 1e16, 1.5e16, 1e-4, 1.234e-5, 5e-324, 1.7976931348623157e308, 2.0 ** 53, 1 / 3, -2.5e-7, 0.1, 1e22, 123e18]}),
    ("str_random_floats", "{{ xs }}|{{ xs | tojson }}|{% for x in xs %}{{ x }},{% endfor %}", {"xs": [
        __import__("random").Random(5).choice([1, -1]) * 10 ** __import__("random").Random(i).uniform(-30, 30) for i in range(300)]
        + [float(i) for i in range(0, 2 ** 60, 2 ** 54)] + [i / 7 for i in range(50)]}),
    ("str_ints", "{{ 2 ** 62 }} {{ -9223372036854775807 }} {{ 10 // 3 }} {{ -10 // 3 }} {{ 10 % -3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** -1 }} {{ 2.0 ** 2 }} {{ true + true }} {{ 3 * 1.5 }}", {}),
    ("str_context_values", "{{ m[0] }} {{ flag }} {{ num }} {{ pi }}", {"m": MSGS, "flag": True, "num": 12, "pi": 3.25}),
    ("str_concat_types", "{{ 'n' ~ 1 ~ 1.5 ~ [1] ~ none ~ true ~ undefined_var }}", {}),
    ("str_string_mult", "{{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'x' + 'y' }} {{ [1] + [2] }}", {}),
    # Filters
    ("filter_trim", "[{{ '  a b  ' | trim }}] [{{ 'xxaxx' | trim('x') }}] [{{ '\\n\\t a \\u00a0' | trim }}]", {}),
    ("filter_upper_lower", "{{ 'aBc é' | upper }} {{ 'ÀBC' | lower }} {{ none | upper }}", {}),
    ("filter_length", "{{ 'héllo' | length }} {{ [1, 2] | length }} {{ {'a': 1} | length }} {{ undefined_thing | length }} {{ '🚀' | count }}", {}),
    ("filter_tojson", "{{ v | tojson }}", {"v": {"b": [1, 2.5, None, True, False], "a": "x\"y\\z\n\u00e9\u2028\U0001F680<>&'", "n": {}, "l": []}}),
    ("filter_tojson_indent", "{{ v | tojson(indent=4) }}|{{ v | tojson(indent=2, sort_keys=true) }}|{{ [] | tojson(indent=2) }}|{{ {'a': []} | tojson(indent=1) }}", {"v": {"z": [1, {"y": None}], "a": "b"}}),
    ("filter_tojson_separators", "{{ v | tojson(separators=(',', ':')) }}", {"v": {"a": [1, 2]}}),
    ("filter_tojson_scalars", "{{ 'str' | tojson }} {{ 1 | tojson }} {{ 1.5 | tojson }} {{ none | tojson }} {{ true | tojson }} {{ (1, 2) | tojson }}", {}),
    ("filter_join", "{{ ['a', 'b'] | join }} {{ ['a', 'b'] | join(', ') }} {{ [1, none, 2.5] | join('-') }} {{ m | join(',', attribute='role') }} {{ 'abc' | join('.') }}", {"m": MSGS}),
    ("filter_default", "{{ u | default('d') }} {{ none | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }} {{ 0 | d('z', boolean=true) }} {{ false | default(1) }}", {}),
    ("filter_first_last", "{{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ 'abc' | first }} {{ 'abc' | last }} [{{ [] | first }}] {{ {'k': 1, 'j': 2} | first }}", {}),
    ("filter_list", "{{ 'ab' | list }} {{ {'a': 1} | list }} {{ (1, 2) | list }} {{ range(2) | list }}", {}),
    ("filter_string", "{{ 1 | string }} {{ none | string }} {{ [1, 'a'] | string }} {{ (1 | string) ~ 'x' }}", {}),
    ("filter_int_float", "{{ '12' | int }} {{ ' 7 ' | int }} {{ '3.9' | int }} {{ 3.9 | int }} {{ 'x' | int(5) }} {{ true | int }} {{ '0x1A' | int(0, 16) }} {{ '2.5' | float }} {{ 'x' | float }} {{ 2 | float }}", {}),
    ("filter_capitalize_title", "{{ 'hELLO wORLD' | capitalize }} {{ \"hello world's-best (test) x\" | title }} {{ \"it's\" | title }}", {}),
    ("filter_replace", "{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'abc' | replace('', '-') }}", {}),
    ("filter_items", "{{ {'b': 1, 'a': 2} | items | list }} {% for k, v in {'x': 'y'} | items %}{{ k }}{{ v }}{% endfor %}{{ u | items | list }}", {}),
    ("filter_selectattr", "{{ m | selectattr('role', 'equalto', 'user') | list }} {{ m | selectattr('content') | map(attribute='role') | list }} {{ m | rejectattr('role', 'in', ['user', 'system']) | map(attribute='role') | join }}", {"m": MSGS + [{"role": "tool", "content": ""}]}),
    ("filter_select_reject", "{{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ [0, 1, '', 'a', none] | select | list }} {{ [1, 5, 9] | select('gt', 4) | list }}", {}),
    ("filter_map", "{{ m | map(attribute='role') | list }} {{ ['a', 'B'] | map('upper') | list }} {{ m | map(attribute='missing', default='?') | list }} {{ [' x ', 'y '] | map('trim') | join }} {{ [[1, 2], [3]] | map('length') | list }}", {"m": MSGS}),
    ("filter_map_nested_attribute", "{{ c | map(attribute='function.name') | list }} {{ c | map(attribute='ids.0') | list }}", {"c": [{"function": {"name": "f"}, "ids": [7]}, {"function": {"name": "g"}, "ids": [8]}]}),
    ("filter_safe_escape", "{{ '<b>&\"\\'' | safe }} {{ '<b>&\"\\'' | escape }} {{ '<i>' | e }}", {}),
    ("filter_indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'a\\nb' | indent('> ') }}|{{ 'x' | indent(first=true) }}|{{ 'a\\n' | indent(1) }}", {}),
    ("filter_round", "{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 1.25 | round(1) }} {{ 7 | round }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ -1.5 | round }}", {}),
    ("filter_abs", "{{ -3 | abs }} {{ -2.5 | abs }} {{ 4 | abs }}", {}),
    ("filter_unique", "{{ ['a', 'A', 'b', 'a'] | unique | list }} {{ ['a', 'A'] | unique(case_sensitive=true) | list }} {{ [3, 1, 3, 2, 1] | unique | list }} {{ m | unique(attribute='role') | map(attribute='content') | list }}", {"m": MSGS + [{"role": "user", "content": "again"}]}),
    ("filter_reverse", "{{ 'abc' | reverse }} {{ [1, 2, 3] | reverse | list }} {{ (1, 2) | reverse | list }}", {}),
    ("filter_sort", "{{ ['b', 'C', 'a'] | sort }} {{ ['b', 'C', 'a'] | sort(case_sensitive=true) }} {{ [3, 1, 2] | sort(reverse=true) }} {{ m | sort(attribute='content') | map(attribute='role') | list }} {{ [2.5, 1, 3] | sort }}", {"m": MSGS}),
    ("filter_dictsort", "{{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1, 'a': 2} | dictsort(by='value') }} {{ {'b': 1, 'A': 2} | dictsort(reverse=true) }}", {}),
    ("filter_sum_min_max", "{{ [1, 2, 3] | sum }} {{ [1, 2] | sum(start=10) }} {{ [{'n': 2}, {'n': 5}] | sum(attribute='n') }} {{ ['b', 'A', 'c'] | min }} {{ ['b', 'A', 'c'] | max }} {{ [{'n': 2}, {'n': 5}] | max(attribute='n') }}", {}),
    ("filter_format", "{{ '%s is %d years' | format('Tom', 30) }} {{ '%5s|%-5s|' | format('a', 'b') }} {{ '%.2f %05.1f %x %%' | format(3.14159, 2.25, 255) }} {{ '%r' | format('q') }} {{ '%x|%o|%u|%i' | format(-255, -8, 7, 3.9) }} {{ '%c%c' | format(65, 'é' | length) }} {{ '%e %g %10.3f|%-6d|' | format(12345.678, 0.0001, 3.14159, 42) }}", {}),
    ("filter_wordcount_center", "{{ 'one two, three_four 5' | wordcount }} [{{ 'ab' | center(7) }}] [{{ 'abc' | center(6) }}]", {}),
    ("filter_batch_attr", "{{ [1, 2, 3, 4, 5] | batch(2) | list }} {{ [1, 2, 3] | batch(2, 0) | list }} {{ m[1] | attr('role') }}", {"m": MSGS}),
    ("filter_count_alias", "{{ [1, 2] | count }} {{ 'ab' | d('x') }}", {}),
    ("filter_on_undefined", "[{{ u | trim }}][{{ u | upper }}][{{ u | join(',') }}][{{ u | list }}][{{ u | string }}][{{ u | first }}][{{ u | last }}][{{ u | sort }}][{{ u | replace('a', 'b') }}][{{ u | reverse | list }}][{{ u | map('upper') | list }}][{{ u | select | list }}][{{ u | unique | list }}][{{ u | sum }}][{{ u | default('d') }}][{{ u | safe }}][{{ u | capitalize }}][{{ u | title }}][{{ u | wordcount }}][{{ u | escape }}][{{ u | length }}][{{ u | items | list }}][{{ u | min }}][{{ u | batch(2) | list }}][{{ u | format }}]", {}),
    ("filter_indent_undefined", "{{ u | indent }}", {}),
    ("filter_int_undefined", "{{ u | int }}", {}),
    ("filter_abs_undefined", "{{ u | abs }}", {}),
    ("filter_dictsort_undefined", "{{ u | dictsort }}", {}),
    ("filter_unknown_at_runtime", "{% if true %}{{ x | bogus }}{% endif %}", {}),
    ("filter_unknown_in_loop_in_if", "{% if false %}{% for x in [] %}{{ x | bogus }}{% endfor %}{% endif %}", {}),
    ("filter_unknown_in_condexpr", "{{ (x | bogus) if false else 'fine' }}", {}),
    # Tests
    ("test_defined", "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ x.missing is defined }} {{ n is none }} {{ n is defined }}", {"x": {"a": 1}, "n": None}),
    ("test_types", "{{ 'a' is string }} {{ 1 is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ 1 is integer }} {{ 1.0 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ 1 is boolean }} {{ true is true }} {{ 1 is true }} {{ false is false }}", {}),
    ("test_containers", "{{ {} is mapping }} {{ [] is mapping }} {{ [] is sequence }} {{ 'a' is sequence }} {{ {} is sequence }} {{ 1 is sequence }} {{ [] is iterable }} {{ 'x' is iterable }} {{ 1 is iterable }} {{ u is iterable }} {{ none is iterable }}", {}),
    ("test_callable_misc", "{{ range is callable }} {{ 'x'.upper is callable }} {{ 1 is callable }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 'aB' is lower }} {{ 2 is even }} {{ -3 is odd }} {{ 'upper' is filter }} {{ 'odd' is test }} {{ 'nope' is filter }}", {}),
    ("test_compare_tests", "{{ 1 is lt 2 }} {{ 2 is le 2 }} {{ 3 is ge 4 }} {{ 1 is ne 1 }} {{ 2 is in [1, 2] }} {{ 'a' is in 'cat' }} {{ 1 is lessthan 2 }} {{ 1 is greaterthan 2 }}", {}),
    ("test_in_filter_args", "{{ m | selectattr('role', 'defined') | list | length }} {{ [none, 1] | reject('none') | list }} {{ ['a', 1] | select('string') | list }}", {"m": MSGS}),
    # String methods
    ("method_strip_family", "[{{ '  x  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ 'xxyxx'.strip('x') }}][{{ '\\n x \\t'.strip() }}][{{ 'abc'.lstrip('ba') }}]", {}),
    ("method_split", "{{ 'a b  c '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split() }} {{ ''.split(',') }} {{ '  a  b '.split(none, 1) }} {{ 'x</think>y'.split('</think>')[-1] }}", {}),
    ("method_case", "{{ 'abc'.upper() }} {{ 'ABC'.lower() }} {{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'hELLO'.capitalize() }} {{ 'aBc'.swapcase() }}", {}),
    ("method_starts_ends", "{{ 'hello'.startswith('he') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith('lo') }} {{ 'hello'.endswith('x') }} {{ ''.startswith('') }}", {}),
    ("method_replace_find", "{{ 'aXbXc'.replace('X', '-') }} {{ 'aXbXc'.replace('X', '-', 1) }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ 'hello'.index('e') }}", {}),
    ("method_format", "{{ '{} + {} = {}'.format(1, 2, 3) }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{x}-{y}'.format(x=1, y='z') }} {{ '{{literal}} {}'.format(5) }} {{ '{:>5}|{:<4}|{:^5}|{:.2f}'.format('r', 'l', 'c', 3.14159) }}", {}),
    ("method_join_misc", "{{ ', '.join(['a', 'b']) }} {{ '-'.join('abc') }} {{ 'abc'.isalpha() }} {{ '123'.isdigit() }} {{ ' '.isspace() }} {{ 'a1'.isalnum() }} {{ 'Ab'.isupper() }} {{ 'ab'.islower() }} {{ 'prefix-x'.removeprefix('prefix-') }} {{ 'x.txt'.removesuffix('.txt') }} {{ '7'.zfill(3) }} {{ 'a'.center(5, '*') }} {{ 'a=b=c'.partition('=') }} {{ 'a\\nb\\r\\nc'.splitlines() }}", {}),
    ("method_dict", "{{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d['items'] is defined }} {% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}", {"d": {"a": 1, "b": [2]}}),
    ("method_list", "{{ [1, 2, 1].count(1) }} {{ ['a', 'b'].index('b') }}", {}),
    ("method_dict_key_shadows", "{{ d.items is callable }} {{ d['items'] }} {{ d.get('items') }}", {"d": {"items": "value"}}),
    # Undefined semantics
    ("undefined_print", "[{{ nothing }}][{{ nothing_else }}]", {}),
    ("undefined_missing_key", "[{{ d.missing }}][{{ d['missing'] }}][{{ l[5] }}][{{ none_value.x }}][{{ 'str'.missing }}]", {"d": {}, "l": [1], "none_value": None}),
    ("undefined_compare", "{{ nothing == nothing2 }} {{ nothing == none }} {{ nothing != 1 }} {{ not nothing }} {{ nothing ~ 'x' }} {{ 'a' in nothing }}", {}),
    ("undefined_truthiness", "{% if nothing %}yes{% else %}no{% endif %} {% if nothing is defined and nothing.x %}bad{% endif %}ok", {}),
    ("undefined_attr_error", "{{ nothing.attr }}", {}),
    ("undefined_item_error", "{{ nothing['k'] }}", {}),
    ("undefined_add_error", "{{ nothing + 1 }}", {}),
    ("undefined_call_error", "{{ nothing() }}", {}),
    ("undefined_tojson_error", "{{ nothing | tojson }}", {}),
    ("undefined_nested_error", "{{ d.missing.deeper }}", {"d": {}}),
    ("lex_tag_strings_with_delimiters", "{% set x = '%}' %}{{ x }}{{ '{%' }}{{ \"{{\" }}{# '#}' #}", {}),
    ("lex_nbsp_is_whitespace", "a\u00a0{%- if true %}b{% endif %}", {}),
    ("lex_lstrip_unicode_ws_line", "x\n\u3000 {% if true %}y{% endif %}", {}),
    ("parse_deep_attribute", "{{ a.b.c }} {{ a['b'].c }} {{ a.b['c'] }} [{{ a.x.c is defined }}]", {"a": {"b": {"c": 1}}}),
    ("parse_and_or_values", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 'z' }} {{ none or none }} {{ [] or [1] }}", {}),
    ("parse_is_defined_and", "{% if x is defined and x %}a{% endif %}{% if y is defined and y.z %}b{% endif %}c", {"x": 1}),
    ("parse_string_concat_plus", "{{ 'a' + 'b' ~ 'c' + 'd' }}", {}),
    ("parse_unary_minus_filter", "{{ -x | abs }} {{ - 3 }} {{ +3 }} {{ not not x }}", {"x": 5}),
    ("parse_comparison_of_mixed", "{{ 1 == '1' }} {{ none == false }} {{ 0 == false }} {{ 1 == true }} {{ [1] == (1,) }} {{ {'a': 1} == {'a': 1} }}", {}),
    ("parse_messages_loop_index", "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}X{% endif %}{{ loop.index0 % 2 }}{% endfor %}", {"messages": MSGS}),
    ("parse_last_message_check", "{{ messages[-1].role == 'assistant' }} {{ (messages | last).content }} {{ messages[messages | length - 1]['role'] }}", {"messages": MSGS}),
    ("parse_whitespace_heavy", "{%-   if   true   -%}  x  {%-   endif   -%}", {}),
    ("parse_multiline_tag", "{{\n  'a'\n  ~\n  'b'\n}}", {}),
    # Runtime errors
    ("error_raise_exception", "before{{ raise_exception('Only user and assistant roles are supported!') }}after", {}),
    ("error_raise_in_loop", "{% for m in m %}{% if m.role == 'assistant' %}{{ raise_exception('bad role ' + m.role) }}{% endif %}{% endfor %}", {"m": MSGS}),
    ("error_type_add", "{{ 'a' + 1 }}", {}),
    ("error_not_iterable", "{% for x in 5 %}{% endfor %}", {}),
    ("error_division_by_zero", "{{ 1 / 0 }}", {}),
    ("error_unsafe_append", "{{ l.append(3) }}", {"l": [1]}),
    ("error_unsafe_update", "{{ d.update({'a': 1}) }}", {"d": {}}),
    ("error_namespace_underscore", "{% set ns = namespace() %}{% set ns._x = 1 %}", {}),
    ("error_set_attr_on_non_namespace", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("error_unpack_count", "{% set a, b = [1, 2, 3] %}", {}),
    ("error_empty_messages_index", "{{ messages[0]['role'] }}", {"messages": []}),
    ("error_list_plus_string", "{{ 'x' + messages[0].content }}", {"messages": [{"content": ["part"]}]}),
    ("error_compare_types", "{{ 1 < 'a' }}", {}),
    ("error_int_overflow_free", "{{ 2 ** 63 - 1 }}", {}),
    # Syntax errors (with line numbers)
    ("syntax_unclosed_if", "line1\n{% if true %}\nno end", {}),
    ("syntax_unclosed_for", "{% for x in y %}\n{{ x }}", {}),
    ("syntax_unclosed_variable", "a\nb {{ x", {}),
    ("syntax_unclosed_block_tag", "{% if x ", {}),
    ("syntax_unclosed_comment", "a\n{# never closed", {}),
    ("syntax_unknown_filter", "ok\n{{ x | no_such_filter }}", {}),
    ("syntax_unknown_filter_unreached", "{% if false %}{{ x | bogus }}{% endif %}", {}),
    ("syntax_unknown_test", "{{ x is frobnicated }}", {}),
    ("syntax_unknown_tag", "{% frobnicate %}", {}),
    ("syntax_stray_endif", "text\n\n{% endif %}", {}),
    ("syntax_stray_endfor", "{% if true %}{% endfor %}", {}),
    ("syntax_bad_expression", "{{ 1 + }}", {}),
    ("syntax_unbalanced_paren", "{{ (1 + 2 }}", {}),
    ("syntax_extra_paren", "{{ 1 + 2) }}", {}),
    ("syntax_unterminated_string", "{{ 'abc }}", {}),
    ("syntax_empty_output", "{{ }}", {}),
    ("syntax_bad_char", "{{ 1 $ 2 }}", {}),
    ("syntax_elif_after_else", "{% if a %}{% else %}{% elif b %}{% endif %}", {}),
    ("syntax_set_without_value", "{% set %}", {}),
    ("syntax_for_without_in", "{% for x y %}{% endfor %}", {}),
    ("syntax_macro_bad_default_order", "{% macro m(a=1, b) %}{% endmacro %}", {}),
    ("syntax_chained_is", "{{ 1 is odd is even }}", {}),
    ("syntax_endraw_missing", "{% raw %}abc", {}),
    ("syntax_error_line_3", "a\nb\n{{ 1 +* 2 }}", {}),
]


def random_whitespace_templates(count, seed=1234):
    """Random nests of tags with every whitespace-control form between random whitespace and text,
    to pin trim_blocks/lstrip_blocks and -/+ handling against jinja2's lexer."""
    import random
    rng = random.Random(seed)
    gaps = ["", " ", "  ", "\n", "\n\n", "\t", " \n ", "\n  ", "x", " x ", "\nx\n", "\u00a0", "\r\n  "]
    left = ["", "-", "+"]
    right = ["", "-", "+"]

    def tag(body, kind="%"):
        l, r = rng.choice(left), rng.choice(right)
        if kind == "{":
            return "{{" + l.replace("+", "") + " " + body + " " + r.replace("+", "") + "}}"
        if kind == "#":
            return "{#" + l + " " + body + " " + r + "#}"
        return "{%" + l + " " + body + " " + r + "%}"

    def block(depth):
        out = rng.choice(gaps)
        for _ in range(rng.randint(1, 4)):
            choice = rng.random()
            if choice < 0.25 and depth < 3:
                out += tag("if " + rng.choice(["true", "false", "x"])) + block(depth + 1)
                if rng.random() < 0.4:
                    out += tag("else") + block(depth + 1)
                out += tag("endif")
            elif choice < 0.4 and depth < 3:
                out += tag("for i in range(2)") + block(depth + 1) + tag("endfor")
            elif choice < 0.55:
                out += tag("'v'", "{")
            elif choice < 0.65:
                out += tag("c", "#")
            elif choice < 0.75:
                out += tag("set y = 1")
            else:
                out += rng.choice(gaps)
            out += rng.choice(gaps)
        return out

    return [(f"ws_random_{i:03d}", block(0), {"x": True}) for i in range(count)]


def random_expression_templates(count, seed=99):
    """Random filters, operators, tests and methods over a pool of Python values, so str(),
    repr(), tojson and each operation's errors are pinned against jinja2 on values no one chose."""
    import random
    rng = random.Random(seed)
    values = {
        "i": 7, "n": -3, "z": 0, "f": 2.5, "g": -0.125, "big": 10 ** 12, "t": True, "no": None,
        "s": "Hello, World", "w": "  padded\tand\nlines  ", "u": "Ünïcödé 🚀 e\u0301", "e": "",
        "d": "42", "q": "it's \"quoted\"", "l": [3, 1, 2], "ls": ["b", "A", "c", "a"], "le": [],
        "lm": [1, "x", None, 2.5, True], "o": {"b": 2, "a": [1, {"k": "v"}], "c": None}, "oe": {},
        "msg": {"role": "user", "content": "Hi there"}, "nested": [[1, 2], [3]],
    }
    names = list(values) + ["undef"]
    filters = ["trim", "upper", "lower", "length", "list", "first", "last", "string", "capitalize",
               "title", "unique | list", "sort", "reverse | list", "tojson", "join(',')", "abs", "int",
               "float", "round", "round(1)", "default('dflt')", "items | list", "wordcount", "escape",
               "count", "sum", "min", "max", "tojson(indent=2)", "replace('l', 'L')", "indent(2)",
               "center(9)", "batch(2) | list", "select | list", "map('string') | list", "dictsort",
               "selectattr('role') | list", "map(attribute='role') | list", "safe", "e", "d(1)"]
    operators = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or", "**"]
    tests = ["string", "number", "integer", "float", "mapping", "sequence", "iterable", "none",
             "defined", "undefined", "true", "false", "boolean", "odd", "even", "lower", "upper",
             "divisibleby 2", "eq 7", "callable"]
    methods = ["upper()", "lower()", "strip()", "split()", "split(',')", "startswith('H')",
               "endswith('d')", "replace('o', '0')", "title()", "capitalize()", "find('o')", "count('l')",
               "items() | list", "keys() | list", "values() | list", "get('a')", "get('zz', 0)",
               "index(1)", "isdigit()", "lstrip()", "rstrip('  ')", "format(1, 2)"]
    cases = []
    for i in range(count):
        a, b = rng.choice(names), rng.choice(names)
        kind = rng.random()
        if kind < 0.4:
            expr = f"{a} | {rng.choice(filters)}"
            if rng.random() < 0.3:
                expr += f" | {rng.choice(filters)}"
        elif kind < 0.65:
            op = rng.choice(operators)
            if op == "**":
                b = rng.choice(["i", "n", "z", "f", "t"])
            expr = f"{a} {op} {b}"
        elif kind < 0.85:
            expr = f"{a} is {'not ' if rng.random() < 0.3 else ''}{rng.choice(tests)}"
        else:
            expr = f"{a}.{rng.choice(methods)}"
        cases.append((f"expr_random_{i:04d}", "{{ " + expr + " }}", "pool"))
    return cases, values


def random_statement_templates(count, seed=2024):
    """Random nests of for/if/set/namespace/macro/break/continue over a small context, to pin
    jinja2's scoping (loop bodies and macros get fresh frames, `if` does not) and loop variables."""
    import random
    rng = random.Random(seed)
    names = ["a", "b", "c"]
    loop_attrs = ["index", "index0", "revindex", "revindex0", "first", "last", "length", "previtem", "nextitem"]

    def expr(loop_vars):
        options = [lambda: rng.choice(names), lambda: str(rng.randint(0, 3)), lambda: "ns.n",
                   lambda: "'" + rng.choice(["x", "yz", ""]) + "'", lambda: "items | length",
                   lambda: rng.choice(names) + " ~ 'k'"]
        if loop_vars:
            options.append(lambda: rng.choice(loop_vars))
            options.append(lambda: "loop." + rng.choice(loop_attrs))
        return rng.choice(options)()

    def block(depth, loop_vars, in_loop):
        out = ""
        for _ in range(rng.randint(1, 3)):
            r = rng.random()
            if r < 0.2 and depth < 3:
                var = rng.choice(["i", "j", "item"])
                source = rng.choice(["items", "range(3)", "[]", "'ab'", "(items if a else [])"])
                cond = rng.choice(["", "", f" if {var} != 1"])
                out += f"{{% for {var} in {source}{cond} %}}" + block(depth + 1, loop_vars + [var], True)
                if rng.random() < 0.3:
                    out += "{% else %}E" + block(depth + 1, loop_vars, in_loop)
                out += "{% endfor %}"
            elif r < 0.4 and depth < 3:
                out += f"{{% if {expr(loop_vars)} %}}" + block(depth + 1, loop_vars, in_loop)
                if rng.random() < 0.4:
                    out += f"{{% elif {expr(loop_vars)} %}}" + block(depth + 1, loop_vars, in_loop)
                if rng.random() < 0.4:
                    out += "{% else %}" + block(depth + 1, loop_vars, in_loop)
                out += "{% endif %}"
            elif r < 0.55:
                out += f"{{% set {rng.choice(names)} = {expr(loop_vars)} %}}"
            elif r < 0.65:
                out += f"{{% set ns.n = ns.n ~ {expr(loop_vars)} %}}"
            elif r < 0.7 and in_loop:
                out += rng.choice(["{% break %}", "{% continue %}"])
            elif r < 0.78:
                out += f"{{{{ m({expr(loop_vars)}) }}}}"
            else:
                out += f"[{{{{ {expr(loop_vars)} }}}}]"
        return out

    prelude = "{% set ns = namespace(n='') %}{% macro m(x, y='d') %}<{{ x }}{{ y }}{{ a }}>{% endmacro %}"
    cases = []
    for i in range(count):
        body = block(0, [], False)
        template = prelude + body + "|{{ a }},{{ b }},{{ c }},{{ ns.n }}"
        cases.append((f"stmt_random_{i:03d}", template, {"items": [1, 2, 3], "a": "A", "b": 0}))
    return cases


def classify(error):
    """The TemplateError.Kind the Swift side should throw for a Python exception."""
    if isinstance(error, jinja2.exceptions.TemplateSyntaxError):
        return "syntax"
    if isinstance(error, jinja2.exceptions.UndefinedError):
        return "undefined"
    if isinstance(error, jinja2.exceptions.SecurityError):
        return "security"
    if type(error) is jinja2.exceptions.TemplateError:
        return "raised"
    return "type"


def error_record(error):
    record = {"kind": classify(error), "python_type": type(error).__name__, "message": str(error)}
    if isinstance(error, jinja2.exceptions.TemplateSyntaxError):
        record["line"] = error.lineno
    return record


def render_with_transformers(template, messages, add_generation_prompt, tools=None, special_tokens=None, extra=None,
                             continue_final_message=False):
    """What apply_chat_template(tokenize=False) does: refuse an empty conversation, drop null keys,
    then render_jinja_template."""
    if len(messages) == 0:
        raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    if continue_final_message and add_generation_prompt:
        raise ValueError("continue_final_message and add_generation_prompt are not compatible.")
    messages = [{k: v for k, v in m.items() if v is not None} for m in copy.deepcopy(messages)]
    kwargs = {**(special_tokens or {}), **(extra or {})}
    rendered, _ = render_jinja_template(
        conversations=[messages], tools=tools, chat_template=template,
        add_generation_prompt=add_generation_prompt, continue_final_message=continue_final_message, **kwargs)
    return rendered[0]


def make_cases(template, special_tokens, conversations, tool_conversations, tokenizer=None, extra=None):
    cases = []
    items = [(name, msgs, None) for name, msgs in conversations.items()]
    items += [(name, msgs, tools) for name, (msgs, tools) in tool_conversations.items()]
    for name, messages, tools in items:
        for agp, cont in ((False, False), (True, False), (False, True)):
            case = {"name": f"{name}{'+gen' if agp else ''}{'+continue' if cont else ''}", "messages": messages,
                    "add_generation_prompt": agp}
            if cont:
                case["continue_final_message"] = True
            if tools is not None:
                case["tools"] = tools
            if extra:
                case["extra"] = extra
            try:
                expected = render_with_transformers(template, messages, agp, tools, special_tokens, extra, cont)
                if tokenizer is not None:
                    # The public entry point must agree with the function it calls.
                    kw = dict(extra or {})
                    via_tokenizer = tokenizer.apply_chat_template(
                        copy.deepcopy(messages), tools=tools, add_generation_prompt=agp, tokenize=False,
                        continue_final_message=cont, **kw)
                    assert via_tokenizer == expected, (name, via_tokenizer, expected)
                case["expected"] = expected
            except Exception as error:  # the template refused the conversation
                case["error"] = error_record(error)
            cases.append(case)
    return cases


def write(name, payload):
    path = os.path.join(OUT, f"{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False, indent=1)
        f.write("\n")
    total = len(payload.get("cases", []))
    print(f"wrote {os.path.relpath(path, ROOT)} ({total} cases)")


def main():
    os.makedirs(OUT, exist_ok=True)
    warnings.filterwarnings("ignore")

    # (1), (2): the real templates, through the real tokenizer objects.
    for name in ("smollm2", "qwen2.5"):
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(TOKENIZERS, name))
        special = dict(tokenizer.special_tokens_map)
        write(name, {
            "generator": GENERATOR,
            "source": f"Tests/Fixtures/tokenizers/{name}/tokenizer_config.json (chat_template), rendered with AutoTokenizer.apply_chat_template(tokenize=False)",
            "template": tokenizer.chat_template,
            "special_tokens": special,
            "cases": make_cases(tokenizer.chat_template, special, CONVERSATIONS, TOOL_CONVERSATIONS, tokenizer),
        })

    # (3), (4): Llama-2 and Llama-3 formats; (5) hand-written feature templates.
    llama2_special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    llama3_special = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    others = {
        "llama2": (LLAMA2, llama2_special, None),
        "llama3": (LLAMA3, llama3_special, None),
        "llama3.1-style": (LLAMA31_STYLE, llama3_special, None),
        "llama3.1-style-date": (LLAMA31_STYLE, llama3_special, {"date_string": "01 Jan 2025"}),
    }
    others["mistral-style"] = (MISTRAL_STYLE, llama2_special, None)
    others["gemma-style"] = (GEMMA_STYLE, {"bos_token": "<bos>", "eos_token": "<eos>"}, None)
    others["deepseek-style"] = (DEEPSEEK_STYLE, {"bos_token": "<|begin▁of▁sentence|>", "eos_token": "<|end▁of▁sentence|>"}, None)
    others["hermes-style"] = (HERMES_STYLE, {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"}, None)
    for key, template in FEATURE_TEMPLATES.items():
        others[key] = (template, {"bos_token": "<s>", "eos_token": "</s>"}, None)
    for name, (template, special, extra) in others.items():
        write(name, {
            "generator": GENERATOR,
            "source": "written for these tests; rendered with transformers.utils.chat_template_utils.render_jinja_template",
            "template": template,
            "special_tokens": special,
            "cases": make_cases(template, special, CONVERSATIONS, TOOL_CONVERSATIONS, extra=extra),
        })

    # Unit cases through the exact environment transformers compiles.
    units = []
    expression_cases, pool = random_expression_templates(
        int(os.environ.get("GRAFT_EXPR_CASES", "2000")), int(os.environ.get("GRAFT_EXPR_SEED", "7")))
    contexts = {"pool": pool}  # shared by the random expression cases, which name it
    for name, template, context in UNITS + random_whitespace_templates(300) + random_statement_templates(400) + expression_cases:
        # Render a copy: jinja2 can mutate its context (`indent` does `s += "\n"` on a list).
        values = contexts[context] if isinstance(context, str) else context
        case = {"name": name, "template": template, "context": context if isinstance(context, str) else copy.deepcopy(context)}
        try:
            case["expected"] = _compile_jinja_template(template).render(**copy.deepcopy(values))
        except Exception as error:
            case["error"] = error_record(error)
        units.append(case)
    write("units", {"generator": GENERATOR, "contexts": contexts, "cases": units})


if __name__ == "__main__":
    main()
