"""The app shell under Pilot: it paints, shows the backends it will use, and quits on q."""

from __future__ import annotations

from console.app import MlopsApp
from console.config import Settings


def settings(**overrides: object) -> Settings:
    base = dict(
        tracking_uri="http://mlflow.example:5000",
        docker_host=None,
        prometheus_url=None,
        context="staging",
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


async def test_shell_shows_backends_and_context() -> None:
    app = MlopsApp(settings(prometheus_url="http://prom:9090", read_only=True))
    async with app.run_test(size=(100, 30)) as pilot:
        text = str(app.query_one("#backends").render())
        assert "http://mlflow.example:5000" in text
        assert "prometheus http://prom:9090" in text
        assert app.sub_title == "context: staging [read-only]"
        await pilot.press("q")
    assert app.return_code == 0


async def test_embedded_defaults_are_shown() -> None:
    app = MlopsApp(settings())
    async with app.run_test(size=(80, 24)):
        text = str(app.query_one("#backends").render())
        assert "local socket" in text and "direct scrape" in text
