"""What `demvae demo` runs once its options are checked: the model loaded and the sentences placed (once per model,
then from the cache), then the app served or a Space written."""

from pathlib import Path

from .dialog_evaluation import dialog_test_split
from .evaluation import load_splits, sentences_of
from .loading import load_model_and_tokenizer
from .stages import is_dialog_model
from .threads import cpu_threads


def loaded_and_placed(args):
    """The model, its tokenizer and the first --max-sentences test sentences placed (`placed_sentences`); for a
    dialog model, the test responses, placed by its response VAE."""
    from .demo_placement import placed_sentences

    model, tokenizer = load_model_and_tokenizer(args.model)
    if is_dialog_model(model):
        if args.test_file:
            raise ValueError("a dialog model places the responses of a dialog corpus: give --dataset (smd, "
                             "daily_dialog or a folder), not --test-file.")
        split, _ = dialog_test_split(model, tokenizer, args)
        return model, tokenizer, placed_sentences(model.response_vae, split["input_ids"])
    sentences, _ = sentences_of(load_splits(args)["test"], tokenizer, model.config.max_sentence_length,
                                args.max_sentences)
    return model, tokenizer, placed_sentences(model, sentences)


def serve(args) -> int:
    """The app on --host:--port until Ctrl-C."""
    from .demo_app import explorer_app

    with cpu_threads(args.num_threads):
        title = f"DEM-VAE explorer: {Path(args.model).name or args.model}"
        explorer_app(*loaded_and_placed(args), title=title).launch(server_name=args.host, server_port=args.port)
    return 0


def write_space_of(args, space, model_id: str) -> None:
    """The Space for `model_id` in `space`, with the test sentences placed by the model at MODEL."""
    from .demo_space import write_space

    with cpu_threads(args.num_threads):
        _, _, placement = loaded_and_placed(args)
        write_space(space, model_id, placement)


__all__ = ["loaded_and_placed", "serve", "write_space_of"]
