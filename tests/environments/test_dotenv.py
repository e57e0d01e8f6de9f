"""`.env` parsing and its preview → apply flow on Secret Management."""

from __future__ import annotations

import base64
import re
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from environments import actions
from environments.dotenv import decode_upload, parse_dotenv
from environments.models import EnvironmentVariable


def test_it_reads_the_usual_forms():
    result = parse_dotenv(
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "export EXPORTED=yes\n"
        "SPACED = around \n"
        "SINGLE='lit $eral \\n # not a comment'\n"
        'DOUBLE="line1\\nline2 \\"q\\" \\\\ end" # comment\n'
        "INLINE=value # comment\n"
        "HASH=a#b\n"
        "URL=postgres://u:p@h/db?x=1&y=2\n"
        "EMPTY=\n"
        'MULTI="first\n'
        'second"\n'
    )
    assert result.errors == []
    assert result.values == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "around",
        "SINGLE": "lit $eral \\n # not a comment",
        "DOUBLE": 'line1\nline2 "q" \\ end',
        "INLINE": "value",
        "HASH": "a#b",
        "URL": "postgres://u:p@h/db?x=1&y=2",
        "EMPTY": "",
        "MULTI": "first\nsecond",
    }


def test_it_keeps_the_last_of_duplicates_and_reports_them():
    result = parse_dotenv("A=1\nB=2\nA=3\n")
    assert result.values == {"A": "3", "B": "2"}
    assert result.duplicates == {"A": [1, 3]}
    assert result.errors == []


def test_it_reports_invalid_lines_with_their_number_and_never_a_value():
    result = parse_dotenv("GOOD=1\n1BAD=secretvalue\nno equals sign\nBAD-DASH=x\nOPEN=\"never closed\nLAST=ok\n")
    assert result.errors == [
        "Line 2: “1BAD” is not a valid variable name: use letters, digits and underscores, not starting with a digit.",
        "Line 3: write KEY=value.",
        "Line 4: “BAD-DASH” is not a valid variable name: use letters, digits and underscores, not starting with a digit.",
        "Line 5: the double quote opened here is never closed.",
    ]
    assert "secretvalue" not in " ".join(result.errors)


def test_it_refuses_binary_and_oversized_uploads():
    with pytest.raises(ValueError, match="not a text file"):
        decode_upload(b"A=\x00\x01")
    with pytest.raises(ValueError, match="larger than 256 KiB"):
        decode_upload(b"A=" + b"x" * 300_000)
    with pytest.raises(ValueError, match="not a UTF-8"):
        decode_upload(b"A=caf\xe9")
    assert decode_upload("\ufeffA=1".encode()) == "A=1"


@pytest.mark.django_db
def test_it_previews_keys_only_then_applies(owner_client, main_env, owner, htmx_headers):
    actions.set_variables(acting_user=owner, environment=main_env, values={"KEEP": "same", "ROTATE": "old"}, is_secret=True)
    dotenv = "KEEP=same\nROTATE=new-secret-value\nFRESH=brand-new-value\nFRESH=brand-new-value-2\n"
    url = reverse("environments:dotenv-preview", args=[main_env.public_id])
    response = owner_client.post(
        url, {"file": SimpleUploadedFile(".env", dotenv.encode()), "is_secret": "on"}, headers=htmx_headers
    )
    body = response.content.decode()
    assert response.status_code == 200
    for key, state in (("KEEP", "unchanged"), ("ROTATE", "changed"), ("FRESH", "new")):
        assert re.search(rf'data-dotenv-key="{key}">.*?<td>{state}</td>', body, re.S)
    assert "new-secret-value" not in body and "brand-new-value" not in body
    assert "<code>FRESH</code> (lines 3, 4)" in body
    assert not EnvironmentVariable.objects.filter(key="FRESH").exists()

    carried = re.search(r'name="text" value="([^"]+)"', body).group(1)
    token = re.search(r'name="token" value="([^"]+)"', body).group(1)
    apply_url = reverse("environments:dotenv-apply", args=[main_env.public_id])
    response = owner_client.post(apply_url, {"text": carried, "token": token, "is_secret": "on"}, headers=htmx_headers)
    assert response["HX-Redirect"] == reverse("environments:settings", args=[main_env.public_id]) + "?restart=1"
    values = {v.key: (v.value, v.is_secret) for v in EnvironmentVariable.objects.all()}
    assert values == {"KEEP": ("same", True), "ROTATE": ("new-secret-value", True), "FRESH": ("brand-new-value-2", True)}


@pytest.mark.django_db
def test_it_accepts_pasted_text_and_refuses_a_tampered_apply(owner_client, main_env, htmx_headers):
    url = reverse("environments:dotenv-preview", args=[main_env.public_id])
    body = owner_client.post(url, {"text": "A=1\n"}, headers=htmx_headers).content.decode()
    token = re.search(r'name="token" value="([^"]+)"', body).group(1)
    tampered = base64.b64encode(b"A=1\nEVIL=2\n").decode()
    response = owner_client.post(
        reverse("environments:dotenv-apply", args=[main_env.public_id]), {"text": tampered, "token": token}, headers=htmx_headers
    )
    assert "differs from the one previewed" in response.content.decode()
    assert not EnvironmentVariable.objects.exists()


@pytest.mark.django_db
def test_it_shows_errors_and_offers_no_apply(owner_client, main_env, htmx_headers):
    url = reverse("environments:dotenv-preview", args=[main_env.public_id])
    body = owner_client.post(url, {"text": "9LIVES=secret-ish\n"}, headers=htmx_headers).content.decode()
    assert "Line 1: “9LIVES” is not a valid variable name" in body
    assert "data-dotenv-apply" not in body and "secret-ish" not in body
    assert "The file holds no variables." in owner_client.post(url, {"text": "  "}, headers=htmx_headers).content.decode()
    response = owner_client.post(url, {"text": "A=1"})
    assert response.status_code == 200 and '<section class="card dotenv-preview"' in response.content.decode()


@pytest.mark.django_db
def test_it_answers_a_paste_too_large_to_read_with_the_files_limit(owner_client, main_env, htmx_headers):
    # Larger than Django reads of a form (DATA_UPLOAD_MAX_MEMORY_SIZE): refused before the view,
    # in the words the file drop uses, for htmx to show; no longer a blank 400.
    url = reverse("environments:dotenv-preview", args=[main_env.public_id])
    pasted = "A=" + "x" * (5 * 1024 * 1024) + "\n"
    # As the page sends it (multipart, the form also takes a file) and as a plain form.
    for body, content_type in ((None, None), (urlencode({"text": pasted}), "application/x-www-form-urlencoded")):
        if body is None:
            response = owner_client.post(url, {"text": pasted}, headers=htmx_headers)
        else:
            response = owner_client.post(url, body, content_type=content_type, headers=htmx_headers)
        assert response.status_code == 413
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        assert response.content.decode() == "The file is larger than 256 KiB; a .env file is much smaller."
    assert not EnvironmentVariable.objects.exists()


@pytest.mark.django_db
def test_it_names_the_limit_for_any_form_too_large_to_read(owner_client, main_env, htmx_headers):
    url = reverse("environments:variable-set", args=[main_env.public_id])
    response = owner_client.post(url, {"key": "BIG", "value": "x" * (3 * 1024 * 1024)}, headers=htmx_headers)
    assert response.status_code == 413
    assert response.content.decode() == "This form is larger than 2.5\xa0MB, the most ale accepts at once. Send less, or in parts."
    assert not EnvironmentVariable.objects.exists()
