"""Elapsed time and ETA on SAT's training log line, through RoutedSatLoop (SAT's own report function runs)."""

import argparse
import logging

from sat.training import deepspeed_training

from training import progress_clock
from training.progress_clock import ProgressClock, clock_text
from training.sat_loop import RoutedSatLoop


def fake_time(*readings):
    values = iter(readings)
    return lambda: next(values)


def test_clock_reports_elapsed_and_eta_from_the_mean_iteration_time():
    clock = ProgressClock(start_iteration=0, now=fake_time(100.0, 112.0, 124.0))
    assert clock.report(10, 40) == "elapsed 0:00:12 | ETA 0:00:36"
    assert clock.report(20, 40) == "elapsed 0:00:24 | ETA 0:00:24"


def test_resumed_run_counts_only_its_own_iterations():
    clock = ProgressClock(start_iteration=100, now=fake_time(0.0, 30.0, 30.0))
    assert clock.report(110, 400) == "elapsed 0:00:30 | ETA 0:14:30"
    assert clock.report(100, 400) == "elapsed 0:00:30 | ETA unknown"
    assert clock_text(90061) == "1 day, 1:01:01"


def sat_style_train(model, optimizer, lr_scheduler, train_data, val_data, timers, args, summary_writer=None, hooks={}):
    """What SAT's train does at a log interval: report through the module global."""
    deepspeed_training.report_iteration_metrics(None, optimizer, 1e-4, 0.5, 1200.0, 10, args.train_iters, args, {})
    return 10, 0


def test_sat_log_line_gains_elapsed_time_and_eta(monkeypatch, caplog):
    monkeypatch.setattr(deepspeed_training, "train", sat_style_train)
    monkeypatch.setattr(progress_clock.time, "monotonic", fake_time(50.0, 62.0))
    loop_args = argparse.Namespace(lora_save_base=False, no_save_optim=False)
    sat_args = argparse.Namespace(iteration=0, train_iters=40, fp16=False, deepspeed=True, gradient_accumulation_steps=1,
                                  batch_size=1, model_parallel_size=1, wandb=False)
    with caplog.at_level(logging.INFO), RoutedSatLoop(loop_args):
        scheduler_past_warmup = argparse.Namespace(init_step=0, auto_warmup_steps=0, num_iters=5)
        deepspeed_training.train(None, None, scheduler_past_warmup, None, None, None, sat_args)
    (line,) = [r.getMessage() for r in caplog.records if "iteration" in r.getMessage()]
    assert "iteration       10/      40 |" in line and "total loss 5.000000E-01" in line
    assert line.endswith("samples/(min*GPU) | elapsed 0:00:12 | ETA 0:00:36")
    assert deepspeed_training.report_iteration_metrics.__module__ == "sat.training.deepspeed_training"  # restored
    assert deepspeed_training.print_rank0.__module__ == "sat.helpers"
