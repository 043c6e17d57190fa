"""Finding 10: chat templates that build dunder names from variables passed, and rendering one in a plain
``jinja2.Environment`` ran ``os.popen``. vet now decides by what a template can reach (Jinja's AST,
never rendered): lookup keys must be constants from an allow-list, only numbers may be computed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bastion import bundled
from bastion.formats import read_gguf
from bastion.vet import Severity, Verdict, vet_path
from bastion.vet.template_scan import scan_template
from tests.adversarial.attacks import TEMPLATE_ATTACKS as LIVE
from tests.vet.corpus import gguf_bytes

#: Real chat-template shapes, written out here: ChatML, Llama 3 and 3.1 (tools), Gemma and Gemma 3,
#: Qwen 2.5 (tools) and Qwen 3 (thinking), Mistral, Phi-3, DeepSeek-R1.
REAL = {
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        " + message['content'] | trim + '<|eot_id|>' %}"
        "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "llama3.1-tools": (
        "{{- bos_token }}{%- if custom_tools is defined %}{%- set tools = custom_tools %}{%- endif %}"
        "{%- if not tools_in_user_message is defined %}{%- set tools_in_user_message = true %}{%- endif %}"
        "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
        "{%- if not tools is defined %}{%- set tools = none %}{%- endif %}"
        "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
        "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
        "{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}"
        "{%- if builtin_tools is defined or tools is not none %}{{- 'Environment: ipython\n' }}{%- endif %}"
        "{%- if builtin_tools is defined %}"
        "{{- 'Tools: ' + builtin_tools | reject('equalto', 'code_interpreter') | join(', ') + '\n\n' }}"
        "{%- endif %}{{- 'Today Date: ' + date_string + '\n\n' }}"
        "{%- if tools is not none and not tools_in_user_message %}"
        "{%- for t in tools %}{{- t | tojson(indent=4) }}{{- '\n\n' }}{%- endfor %}{%- endif %}"
        "{{- system_message }}{{- '<|eot_id|>' }}"
        "{%- for message in messages %}"
        "{%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        " + message['content'] | trim + '<|eot_id|>' }}"
        "{%- elif 'tool_calls' in message %}"
        "{%- if not message.tool_calls|length == 1 %}"
        "{{- raise_exception('This model only supports single tool-calls at once!') }}{%- endif %}"
        "{%- set tool_call = message.tool_calls[0].function %}"
        "{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{{- '{\"name\": \"' + tool_call.name + '\", ' }}{{- '\"parameters\": ' }}"
        "{{- tool_call.arguments | tojson }}{{- '}' }}{{- '<|eot_id|>' }}"
        "{%- elif message.role == 'tool' or message.role == 'ipython' %}"
        "{{- '<|start_header_id|>ipython<|end_header_id|>\n\n' }}"
        "{%- if message.content is mapping or message.content is iterable %}"
        "{{- message.content | tojson }}{%- else %}{{- message.content }}{%- endif %}{{- '<|eot_id|>' }}"
        "{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
        "{% else %}{% set role = message['role'] %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
    ),
    "gemma3": (
        "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
        "{%- if messages[0]['content'] is string -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
        "{%- else -%}{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}{%- endif -%}"
        "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
        "{%- set loop_messages = messages -%}{%- endif -%}"
        "{%- for message in loop_messages -%}"
        "{%- if (message['role'] == 'assistant') -%}{%- set role = 'model' -%}"
        "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
        "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
        "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
        "{%- elif message['content'] is iterable -%}{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}{%- endfor -%}"
        "{%- else -%}{{ raise_exception('Invalid content type') }}{%- endif -%}"
        "{{ '<end_of_turn>\n' }}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"
    ),
    "qwen2.5-tools": (
        "{%- if tools %}{{- '<|im_start|>system\n' }}{%- if messages[0]['role'] == 'system' %}"
        "{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
        "{{- '\n\n# Tools\n\n<tools>' }}{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}"
        "{{- '\n</tools><|im_end|>\n' }}{%- else %}{%- if messages[0]['role'] == 'system' %}"
        "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- endif %}{%- endif %}"
        "{%- for message in messages %}"
        '{%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
        '(message.role == "assistant" and not message.tool_calls) %}'
        "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}"
        "{%- elif message.role == \"assistant\" %}{{- '<|im_start|>' + message.role }}"
        "{%- if message.content %}{{- '\n' + message.content }}{%- endif %}"
        "{%- for tool_call in message.tool_calls %}"
        "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
        '{{- \'\n<tool_call>\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
        "{{- tool_call.arguments | tojson }}{{- '}\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\n' }}"
        '{%- elif message.role == "tool" %}'
        '{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}'
        "{{- '<|im_start|>user' }}{%- endif %}"
        "{{- '\n<tool_response>\n' }}{{- message.content }}{{- '\n</tool_response>' }}"
        "{%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}{{- '<|im_end|>\n' }}{%- endif %}"
        "{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
    ),
    "qwen3-thinking": (
        "{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}"
        "{%- for message in messages[::-1] %}{%- set index = (messages|length - 1) - loop.index0 %}"
        "{%- if ns.multi_step_tool and message.role == 'user' and message.content is string and "
        "not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}"
        "{%- set ns.multi_step_tool = false %}{%- set ns.last_query_index = index %}{%- endif %}{%- endfor %}"
        "{%- for message in messages %}"
        "{%- if message.content is string %}{%- set content = message.content %}"
        "{%- else %}{%- set content = '' %}{%- endif %}"
        "{%- if message.role == 'assistant' %}{%- set reasoning_content = '' %}"
        "{%- if message.reasoning_content is string %}{%- set reasoning_content = message.reasoning_content %}"
        "{%- elif '</think>' in content %}"
        "{%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}"
        "{%- set content = content.split('</think>')[-1].lstrip('\n') %}{%- endif %}"
        "{%- if loop.index0 > ns.last_query_index %}"
        "{{- '<|im_start|>assistant\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content }}"
        "{%- else %}{{- '<|im_start|>assistant\n' + content }}{%- endif %}{{- '<|im_end|>\n' }}"
        "{%- else %}{{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}{%- endif %}"
        "{%- if messages[ns.last_query_index].role == 'user' and loop.last %}{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
        "{%- if enable_thinking is defined and enable_thinking is false %}"
        "{{- '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %}"
    ),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
    ),
    "phi3": (
        "{% for message in messages %}{% if message['role'] == 'system' %}"
        "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
        "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}"
        "{% endif %}"
    ),
    "deepseek-r1": (
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
        "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
        "{%- for message in messages %}{%- if message['role'] == 'system' %}"
        "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
        "{{bos_token}}{{ns.system_prompt}}"
        "{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
        "{{'<｜User｜>' + message['content']}}{%- endif %}"
        "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
        "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
        "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
        " + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n'"
        " + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- endif %}{%- endfor %}{%- endif %}"
        "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
        "{% set content = message['content'] %}{% if '</think>' in content %}"
        "{% set content = content.split('</think>')[-1] %}{% endif %}"
        "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}"
        "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
    ),
}
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "<think>x</think>Hello"},
    {"role": "user", "content": "Bye"},
]


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_template_shapes_pass_and_render(name: str) -> None:
    assert scan_template(REAL[name], "f", name) == []
    # ours, so rendering is fine (in the sandbox): proves the shapes above are real, working templates
    env = ImmutableSandboxedEnvironment()
    env.globals["raise_exception"] = lambda msg: None
    msgs = MESSAGES[1:] if name in ("gemma", "mistral") else MESSAGES
    text = env.from_string(REAL[name]).render(
        messages=msgs, add_generation_prompt=True, bos_token="<s>", eos_token="</s>"
    )
    assert "Bye" in text


def test_bundled_templates_pass() -> None:
    for path in (bundled.smollm2(), bundled.gemma3()):
        tpl = read_gguf(path).metadata.get("tokenizer.chat_template")
        if isinstance(tpl, str):
            assert scan_template(tpl, "f", "t") == [], path


@pytest.mark.parametrize("name", sorted(LIVE))
def test_template_that_reaches_past_the_allow_list_is_fail(name: str, tmp_path: Path) -> None:
    src, code = LIVE[name]
    assert code in {f.code for f in scan_template(src, "f", "t") if f.severity == Severity.FAIL}
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(gguf_bytes({"general.architecture": "llama", "tokenizer.chat_template": src}, 1))
    assert vet_path(gguf, digests=False).verdict == Verdict.FAIL
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize(
    ("src", "code"),
    [
        ("{{ messages|map(attribute=p)|list }}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ messages|map('attr', k)|list }}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ messages|map(f)|list }}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ messages|selectattr(k)|list }}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ messages|select(t)|list }}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ messages|sort(attribute='__class__') }}", "TEMPLATE_DUNDER_ACCESS"),
        ("{{ messages|attr('mro') }}", "TEMPLATE_DUNDER_ACCESS"),
        ("{{ '{0.gi_frame}'.format(messages|map('upper')) }}", "TEMPLATE_DUNDER_ACCESS"),
        ("{{ x.mro() }}", "TEMPLATE_DUNDER_ACCESS"),
        ("{{ x['f_globals'] }}", "TEMPLATE_DUNDER_ACCESS"),
        ("{% for k, v in d.items() %}{{ x[k] }}{% endfor %}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ x[messages[0].content] }}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ x[a:b] }}", "TEMPLATE_COMPUTED_ACCESS"),
        ("{{ x|shell }}", "TEMPLATE_UNKNOWN_FILTER"),
        ("{% if x is shell %}{% endif %}", "TEMPLATE_UNKNOWN_FILTER"),
        ("{{ messages|map('shell')|list }}", "TEMPLATE_UNKNOWN_FILTER"),
    ],
)
def test_lookup_that_is_not_a_constant_from_the_allow_list_is_fail(src: str, code: str) -> None:
    assert code in {f.code for f in scan_template(src, "f", "t") if f.severity == Severity.FAIL}


def test_numeric_subscripts_may_be_computed() -> None:
    src = (
        "{% set ns = namespace(i=0) %}{% set j = messages|length - 1 %}{% set ns.i = j - 1 %}"
        "{% for k in range(3) %}{{ messages[k] }}{% endfor %}"
        "{{ messages[loop.index0] if loop is defined else '' }}{{ messages[j] }}{{ messages[ns.i] }}"
        "{{ messages[-1] }}{{ messages[1:j] }}{{ messages[(j // 2)|int] }}"
    )
    assert scan_template(src, "f", "t") == []


def test_templates_really_run_code_when_rendered_unsandboxed(tmp_path: Path) -> None:
    # Proof the attacks are real: a plain jinja2.Environment renders each in a child process and its own
    # folder, and each one's marker appears. vet only parses.
    script = (
        "import jinja2, os, sys\n"
        "jinja2.Environment().from_string(open(sys.argv[1]).read()).render(messages=[{'role': 'user'}])\n"
        "print(os.path.exists('MARKER'))\n"
    )
    ran = {}
    for name, (src, _) in LIVE.items():
        d = tmp_path / name
        d.mkdir()
        (d / "t.jinja").write_text(src)
        res = subprocess.run(
            [sys.executable, "-c", script, str(d / "t.jinja")],
            cwd=d,
            capture_output=True,
            text=True,
            timeout=60,
        )
        ran[name] = res.stdout.strip() == "True"
    assert all(ran.values()), ran


@pytest.mark.parametrize(
    "key", ["globals", "environment", "parent", "filters", "gi_frame", "f_builtins", "format"]
)
def test_members_of_jinja_and_python_objects_are_refused_by_name(key: str) -> None:
    # instance attributes too (Environment.globals, Context.parent), not only what dir() of a class lists
    assert "TEMPLATE_DUNDER_ACCESS" in {f.code for f in scan_template(f"{{{{ x.{key} }}}}", "f", "t")}
