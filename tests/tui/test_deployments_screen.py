"""Deployments: the live map refreshes by itself; logs; build and deploy through forms; deploy,
take down and roll back confirm first, saying what will change."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from textual.message import Message
from textual.widgets import Input

from backends.errors import BackendError, Conflict
from console.commands import COMMANDS
from console.messages import (
    BackendFailed,
    DeploymentChanged,
    DeploymentsLoaded,
    DeployPlanned,
    RollbackPlanned,
    TakeDownPlanned,
)
from console.modals.confirm import ConfirmModal
from console.modals.deploy_forms import BuildForm, DeployForm
from console.modals.message import ErrorModal
from console.screens.deployments import DeploymentsScreen
from console.screens.logs import LogsScreen
from tests.tui.fakes import FakeBackends, deployment
from tests.tui.helpers import Posted, wait_for_message, wait_for_text, wait_until


def refreshes(fake: FakeBackends) -> int:
    return sum(1 for c in fake.calls if c[0] == "list_deployments")


def notified(app: Any, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


def called(fake: FakeBackends, method: str) -> list[tuple[object, ...]]:
    return [c for c in fake.calls if c[0] == method]


def fill(app: Any, **values: str) -> None:
    """Type into the current form's inputs, by id (``deploy_ref`` → ``#deploy-ref``)."""
    for field_id, value in values.items():
        app.screen.query_one(f"#{field_id.replace('_', '-')}", Input).value = value


async def test_live_map_refreshes_and_pauses_while_hidden(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "iris-prod")
        for expected in ("v2", "champion", "running", "healthy", "8080"):
            assert expected in text
        await wait_until(pilot, lambda: refreshes(fake) >= 3, "periodic refresh")
        fake.deployments.append(deployment("iris-canary", 3))
        await wait_for_text(pilot, "iris-canary")
        await app.switch_mode("runs")
        # A refresh started just before the switch may still be asking: let it end first.
        await wait_until(
            pilot,
            lambda: not [w for w in app.workers if w.group == "deployments" and w.is_running],
            "the last refresh before hiding done",
        )
        await pilot.pause(0.3)
        hidden = refreshes(fake)
        await pilot.pause(0.5)
        assert refreshes(fake) == hidden  # paused while another screen shows
        await app.switch_mode("deploy")
        await wait_until(pilot, lambda: refreshes(fake) > hidden, "resumed")


async def test_take_down_confirms_then_removes(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    posted = Posted()
    async with app.run_test(size=(120, 30), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, DeploymentsLoaded, lambda m: bool(m.deployments))
        await pilot.press("d")
        planned = await wait_for_message(pilot, posted, TakeDownPlanned)
        assert planned.plan.current == deployment() and planned.plan.containers
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert "'iris-prod'" in app.screen.body and "iris v2 on port 8080" in app.screen.body
        await pilot.press("y")
        changed = await wait_for_message(pilot, posted, DeploymentChanged)
        assert changed.name == "iris-prod" and "taken down" in changed.summary
        await wait_for_message(pilot, posted, DeploymentsLoaded, lambda m: not m.deployments)


@pytest.mark.parametrize(("key", "planned_kind"), [("d", TakeDownPlanned), ("R", RollbackPlanned)])
async def test_changes_confirmed_after_another_operator_moved_the_deployment_are_refused(
    make_app: Any, fake: FakeBackends, key: str, planned_kind: type[Message]
) -> None:
    """Take down and roll back apply the plan the dialog showed: if the deployment serves
    something else by the "yes", Conflict, and nothing changes (deploy: test_deploy_...)."""
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    posted = Posted()
    async with app.run_test(size=(120, 30), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, DeploymentsLoaded, lambda m: bool(m.deployments))
        await pilot.press(key)
        await wait_for_message(pilot, posted, planned_kind)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        fake.deployments = [deployment(version=3)]  # someone deployed v3 meanwhile
        await pilot.press("y")
        failed = await wait_for_message(pilot, posted, BackendFailed)
        assert isinstance(failed.error, Conflict), failed.error
        assert not posted.of(DeploymentChanged)
        assert fake.deployments == [deployment(version=3)]


async def test_rollback_confirms_from_and_to(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert "from version 2" in app.screen.body and "to   version 1" in app.screen.body
        await pilot.press("y")
        await wait_until(
            pilot, lambda: ("rollback_deployment", "iris-prod", 1) in fake.calls, "rolled back"
        )
        await wait_until(pilot, lambda: notified(app, "iris-prod now serves iris v1"), "summary")


async def test_rollback_confirm_says_a_build_comes_first_when_the_image_is_gone(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    fake.rollback_image_gone = True
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert "No image of v1 is left: it is built first" in app.screen.body


async def test_rollback_of_an_alias_follower_names_what_the_alias_holds_now(
    make_app: Any, fake: FakeBackends
) -> None:
    """The container label says v2 (deployed then); the alias has moved on to v3 since."""
    fake.deployments = [replace(deployment(), follow_alias=True, alias="champion")]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        body = app.screen.body
        assert "iris@champion moves back" in body
        assert "from version 3" in body and "to   version 1" in body


async def test_logs(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen), "logs")
        log = app.screen.query_one("#log-view")
        await wait_until(pilot, lambda: len(log.lines) == 2, "log lines")
        assert "ready on :8080" in log.lines[1].text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")


async def test_read_only_refuses_take_down(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy", read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("d", "R")
        await pilot.pause(0.2)
        assert isinstance(app.screen, DeploymentsScreen)
        assert sum("read-only" in n.message for n in app._notifications) == 2
        assert not any(c[0] in ("remove_deployment", "rollback_deployment") for c in fake.calls)


async def test_docker_down_shows_unreachable_then_recovers(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    fake.down["docker"] = 2
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "docker unreachable since")
        await wait_for_text(pilot, "iris-prod")


# ---------------------------------------------------------------------- b: build


async def test_build_prefills_the_selected_version_and_reports_the_image(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BuildForm), "build form")
        assert app.screen.query_one("#build-ref", Input).value == "iris/2"
        await pilot.press("enter")
        await wait_until(pilot, lambda: notified(app, "mlops/iris:v2"), "cached result")
        assert called(fake, "build_image") == [("build_image", "iris/2")]
        assert notified(app, "(id img2abc)") and notified(app, "every step from cache")

        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BuildForm), "build form")
        fill(app, build_ref="iris@champion")
        await pilot.press("enter")
        await wait_until(pilot, lambda: notified(app, "mlops/iris:v1"), "built result")
        assert called(fake, "build_image")[-1] == ("build_image", "iris@champion")


async def test_a_running_build_shows_progress_and_blocks_nothing(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    release = threading.Event()
    build = fake.build_image

    def slow_build(reference: str, on_log: Callable[[str], None]) -> Any:
        on_log("Step 2/9 : COPY wheelhouse /wheelhouse")
        release.wait(10)
        return build(reference, on_log)

    fake.build_image = slow_build  # type: ignore[method-assign]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BuildForm), "build form")
        fill(app, build_ref="iris/3")
        await pilot.press("enter")
        await wait_for_text(pilot, "building iris/3… Step 2/9 : COPY wheelhouse")
        before = refreshes(fake)
        await pilot.press("l")  # the screen still answers while the build runs
        await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen), "logs")
        await pilot.press("escape")
        await wait_until(pilot, lambda: refreshes(fake) > before, "still refreshing")
        release.set()
        await wait_until(pilot, lambda: notified(app, "mlops/iris:v3"), "result")
        assert notified(app, "newly built")
        await wait_until(pilot, lambda: not app.screen.tasks, "the progress line cleared")


async def test_a_failing_build_shows_the_backend_error(make_app: Any, fake: FakeBackends) -> None:
    fake.failing["build_image"] = BackendError(
        "Step 3/9 : RUN pip install failed: no space left on device", title="Image build failed"
    )
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "no deployments")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BuildForm), "build form")
        assert app.screen.query_one("#build-ref", Input).value == ""  # nothing selected
        fill(app, build_ref="iris/3")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        assert app.screen.title_text == "Image build failed"
        assert "no space left on device" in app.screen.message
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")
        assert app.screen.tasks == {}


async def test_the_build_form_refuses_a_reference_it_cannot_read(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "no deployments")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BuildForm), "build form")
        fill(app, build_ref="iris")
        await pilot.press("enter")
        await wait_for_text(pilot, "cannot read model reference 'iris'")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")
        assert not called(fake, "build_image")


# ---------------------------------------------------------------------- u: deploy


async def test_deploy_over_a_deployment_says_what_it_replaces(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]  # iris-prod serves v2 through champion
    fake.aliases["champion"] = 3  # promoted since; v3 has no image yet
    app = make_app(start_mode="deploy")
    posted = Posted()
    async with app.run_test(size=(120, 30), message_hook=posted) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, DeployForm), "deploy form")
        form = app.screen
        values = {i.id: i.value for i in form.query(Input)}
        assert values == {
            "deploy-ref": "iris@champion",
            "deploy-name": "iris-prod",
            "deploy-host": "127.0.0.1",
            "deploy-port": "8080",
        }
        await pilot.press("enter")
        planned = await wait_for_message(pilot, posted, DeployPlanned)
        assert (planned.plan.version.version, planned.plan.replaces) == (3, 2)
        assert planned.plan.image is None  # no image of v3: built first
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        body = app.screen.body
        assert body.startswith("Deploy iris v3 as iris-prod on 127.0.0.1:8080, replacing v2")
        assert "iris@champion names v3 now" in body
        assert "no image of v3 yet" in body and "mlops image build iris/3" in body
        assert called(fake, "plan_deploy") == [
            ("plan_deploy", "iris@champion", "iris-prod", 8080, "127.0.0.1", False)
        ]
        await pilot.press("y")
        await wait_until(pilot, lambda: bool(called(fake, "deploy")), "deployed")
        assert called(fake, "deploy") == [("deploy", "iris@champion", "iris-prod", 3)]
        await wait_for_text(pilot, "v3")
        assert notified(app, "iris-prod now serves iris v3") and notified(app, "(was v2)")
        assert notified(app, "its image was built first")


async def test_a_new_deployment_can_be_cancelled_and_nothing_changes(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "no deployments")
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, DeployForm), "deploy form")
        assert app.screen.query_one("#deploy-port", Input).value == "8080"  # the CLI's default
        fill(app, deploy_ref="iris/2", deploy_name="iris-canary", deploy_port="9090")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        body = app.screen.body
        assert body.startswith("Deploy iris v2 as iris-canary on 127.0.0.1:9090, new deployment")
        assert "image mlops/iris:v2" in body
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")
        await pilot.pause(0.2)
        assert not called(fake, "deploy") and fake.deployments == []

        await pilot.press("u")  # esc on the form: not even a plan
        await wait_until(pilot, lambda: isinstance(app.screen, DeployForm), "deploy form")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")
        assert len(called(fake, "plan_deploy")) == 1


async def test_a_failing_deploy_shows_the_backend_error(make_app: Any, fake: FakeBackends) -> None:
    fake.failing["deploy"] = Conflict("port 8080 on 127.0.0.1 is already in use")
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "no deployments")
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, DeployForm), "deploy form")
        fill(app, deploy_ref="iris@champion")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        assert app.screen.title_text == "Conflict"
        assert "port 8080 on 127.0.0.1 is already in use" in app.screen.message
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")
        assert fake.deployments == [] and app.screen.tasks == {}


async def test_a_reference_the_registry_does_not_know_fails_before_any_confirm(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "no deployments")
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, DeployForm), "deploy form")
        fill(app, deploy_ref="iris@staging", deploy_name="iris-canary", deploy_port="9090")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        assert app.screen.title_text == "Not found" and "staging" in app.screen.message
        assert not called(fake, "deploy")
        # Closing the error gives the form back as it was typed, to correct the one field.
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeployForm), "the form again")
        values = {i.id: i.value for i in app.screen.query(Input)}
        assert values["deploy-ref"] == "iris@staging"
        assert values["deploy-name"] == "iris-canary" and values["deploy-port"] == "9090"


# ---------------------------------------------------------------------- read-only


async def test_read_only_refuses_build_and_deploy(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy", read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        screen = app.screen
        assert not screen.check_action("build", ()) and not screen.check_action("deploy", ())
        await pilot.press("b", "u")
        await pilot.pause(0.2)
        assert app.screen is screen
        assert notified(app, "image build is disabled") and notified(app, "deploy is disabled")
        await screen.run_action("build")  # as the palette would, were it not hidden there
        await screen.run_action("deploy")
        await pilot.pause(0.1)
        assert app.screen is screen
        assert not any(c[0] in ("build_image", "plan_deploy", "deploy") for c in fake.calls)
    palette = {c.action: c.mutating for c in COMMANDS if c.mode == "deploy"}
    assert palette["build"] and palette["deploy"]


async def test_a_second_change_to_a_deployment_waits_for_the_first(
    make_app: Any, fake: FakeBackends
) -> None:
    """Two switches of one router at once would each remove what the other started."""
    release = threading.Event()
    real = fake.rollback_deployment

    def slow_rollback(*args: Any, **kwargs: Any) -> Any:
        release.wait(60)  # the test releases it; 5 s ran out on a loaded box before the asserts
        return real(*args, **kwargs)

    fake.deployments = [deployment()]
    fake.rollback_deployment = slow_rollback  # type: ignore[method-assign]
    app = make_app("deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "first confirm")
        await pilot.press("y")
        await wait_for_text(pilot, "rolling back iris-prod")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "second confirm")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: any("still running" in n.message for n in app._notifications),
            "the second change refused",
        )
        assert not [c for c in fake.calls if c[0] == "remove_deployment"]
        release.set()
        await wait_until(pilot, lambda: not app.screen.changing, "released")
