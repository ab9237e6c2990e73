"""yi_helpers.cache: the hub's cache, artefact folders, and folders written atomically."""

from __future__ import annotations

import pytest

from yi_helpers.cache import artifact_dir, atomic_folder, cache_dir


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("YI_HUB_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("YI_HUB_CACHE")
    assert cache_dir().name == "yi-hub"


def test_artifact_dir_lives_in_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YI_HUB_CACHE", str(tmp_path))
    artifacts = tmp_path / "artifacts"
    assert artifact_dir("lesson04-adapter") == artifacts / "embedded" / "lesson04-adapter"
    assert artifact_dir("lesson04-adapter", "01-ai/Yi-6B-Chat") == \
        artifacts / "01-ai--Yi-6B-Chat" / "lesson04-adapter"
    # a local folder (the Yi stand-in, say): its own folder, never the embedded model's
    folder = tmp_path / "yi-chat-standin-tiny"
    folder.mkdir()
    mine = artifact_dir("lesson04-adapter", str(folder))
    assert mine.parent.name.startswith("yi-chat-standin-tiny-") and mine.parent.parent == artifacts
    assert artifact_dir("lesson04-adapter", str(folder)) == mine  # the same place every time
    with pytest.raises(ValueError):
        artifact_dir("../escape")


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "a" / "adapter"
    with atomic_folder(target) as tmp:
        (tmp / "v").write_text("1")
    assert (target / "v").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "v").write_text("half")
        raise RuntimeError("crash while writing")
    assert (target / "v").read_text() == "1"  # the previous folder, untouched
    with atomic_folder(target) as tmp:
        (tmp / "w").write_text("2")
    assert [p.name for p in target.iterdir()] == ["w"]
    assert [p.name for p in target.parent.iterdir()] == ["adapter"]  # nothing left beside it
