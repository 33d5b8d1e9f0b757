"""The simulator's consent bot: answers the local simulator's consent page as a named user, so
`bank-pipeline connect --simulator-user NAME` (the demo, CI, tests) connects without a person.

Reached only when connecting against the simulator.
"""

from __future__ import annotations

from html.parser import HTMLParser

import httpx

from bank_pipeline.errors import BankPipelineError


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action")
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")


def _parse_form(page: str) -> tuple[str, dict[str, str]]:
    """The action and fields of an auto-submitting `form_post` page."""
    parser = _FormParser()
    parser.feed(page)
    if not parser.action:
        raise BankPipelineError("the auth server's form_post page has no form action")
    return parser.action, parser.fields


def answer_consent(
    link: str, auth_url: str, user: str, *, decision: str = "allow", timeout: float = 30
) -> str:
    """Answer the simulator's consent page like a user would: GET the link, POST /consent, follow the
    redirect to the local callback server over real HTTP; returns the page the browser ends on."""
    params = dict(httpx.URL(link).params.multi_items())
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        page = http.get(link)
        if page.status_code != 200:
            raise BankPipelineError(
                f"the simulator's auth page answered HTTP {page.status_code}: {page.text[:200]}"
            )
        answer = http.post(f"{auth_url}/consent", data={**params, "user": user, "decision": decision})
        if answer.status_code in (301, 302, 303, 307):
            response = http.get(answer.headers["location"])
        elif answer.status_code == 200 and "<form" in answer.text:  # response_mode=form_post
            action, fields = _parse_form(answer.text)
            response = http.post(action, data=fields)
        else:
            raise BankPipelineError(
                f"the simulator refused the consent for user {user!r}: HTTP {answer.status_code} {answer.text[:200]}"
            )
        if response.status_code != 200:
            raise BankPipelineError(f"the local callback server answered HTTP {response.status_code}")
        return response.text
