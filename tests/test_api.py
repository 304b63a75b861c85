import subprocess
import sys

import auditml


def test_every_public_name_loads() -> None:
    """Each name in __all__ resolves to an object, and no name is listed twice."""
    assert len(set(auditml.__all__)) == len(auditml.__all__)
    for name in auditml.__all__:
        assert getattr(auditml, name) is not None


def test_verify_helper_starts_without_sqlmodel_or_pydantic_models() -> None:
    """Importing verify's helper module loads neither SQLModel nor the event models."""
    code = (
        "import sys, auditml._internal.tree_worker; "
        "print('sqlmodel' in sys.modules, 'auditml.core.events' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
