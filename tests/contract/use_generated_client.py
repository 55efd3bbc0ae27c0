"""Uses the Python client generated from Switchboard's OpenAPI document as an integrator would:
create, list, read, change and delete an app and an agent, follow a page cursor, and read the
problem documents of a 422, a 404 and a 401. Exits non-zero (with the reason) on any surprise.

Run by tests/it/contract.rs: python3 use_generated_client.py BASE_URL TOKEN, with the generated
package `switchboard_client` on PYTHONPATH."""

import sys

from switchboard_client import AuthenticatedClient
from switchboard_client.api.agents import agents_create, agents_get
from switchboard_client.api.apps import apps_create, apps_delete, apps_get, apps_list, apps_update
from switchboard_client.models import AgentFields, App, CreateApp, Problem, UpdateApp


def expect(condition, what):
    if not condition:
        sys.exit(f"generated client: {what}")


def main(base_url, token):
    client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
    created = [apps_create.sync(client=client, body=CreateApp(name=f"Desk {i}", description="via the generated client")) for i in range(3)]
    expect(all(isinstance(app, App) for app in created), f"create answered {created!r}")

    first = apps_list.sync(client=client, limit=2)
    expect(len(first.data) == 2 and isinstance(first.next_cursor, str), f"first page {first!r}")
    second = apps_list.sync(client=client, limit=2, cursor=first.next_cursor)
    names = [app.name for app in first.data] + [app.name for app in second.data]
    expect(names == ["Desk 2", "Desk 1", "Desk 0"], f"pages in order, newest first: {names}")

    app = created[0]
    renamed = apps_update.sync(app.id, client=client, body=UpdateApp(name="Front desk"))
    expect(isinstance(renamed, App) and renamed.name == "Front desk", f"update answered {renamed!r}")
    expect(apps_get.sync(app.id, client=client).name == "Front desk", "the change is read back")

    agent_body = AgentFields.from_dict({"name": "Ava", "instructions": "Help callers."})
    agent = agents_create.sync(app.id, client=client, body=agent_body)
    expect(agents_get.sync(agent.id, client=client).name == "Ava", f"agent answered {agent!r}")

    invalid = apps_create.sync_detailed(client=client, body=CreateApp(name=" "))
    expect(invalid.status_code == 422 and isinstance(invalid.parsed, Problem), f"blank name answered {invalid.status_code}")
    expect(invalid.parsed.errors[0].field == "name", f"the field is named: {invalid.parsed!r}")

    expect(apps_delete.sync_detailed(created[2].id, client=client).status_code == 204, "delete")
    gone = apps_get.sync_detailed(created[2].id, client=client)
    expect(gone.status_code == 404 and isinstance(gone.parsed, Problem), f"a deleted app answered {gone.status_code}")
    expect(gone.parsed.type_ == "/problems/not-found", f"problem type {gone.parsed.type_}")

    stranger = AuthenticatedClient(base_url=base_url, token="sbt_not-a-token")
    refused = apps_list.sync_detailed(client=stranger)
    expect(refused.status_code == 401 and isinstance(refused.parsed, Problem), f"a bad token answered {refused.status_code}")
    print("generated client: ok")


if __name__ == "__main__":
    main(*sys.argv[1:3])
