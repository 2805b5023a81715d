"""The demo's web page (Gradio): three tabs over a `ComponentExplorer`, and for a dialog model a fourth over a
`ConversationExplorer`, each button one named API endpoint (`/generate`, `/describe`, `/read_sentence`,
`/between`, `/respond`) that `gradio_client.Client` calls as the page does."""

import functools
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local model explorer

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from .demo_conversation import ConversationExplorer  # noqa: E402
from .demo_explorer import ComponentExplorer  # noqa: E402
from .demo_placement import Placement  # noqa: E402
from .loading import load_model_and_tokenizer  # noqa: E402
from .stages import is_dialog_model, response_vae  # noqa: E402

INTRO = ("Each mixture component of a DEM-VAE is a kind of sentence. Pick a component (or a label) and generate "
         "from it, read a sentence of your own, or walk between two sentences.")


def shown_errors(function):
    """A bad choice (ValueError) shown on the page in one line, as the command line shows it."""
    @functools.wraps(function)
    def wrapped(*args):
        try:
            return function(*args)
        except ValueError as error:
            raise gr.Error(str(error)) from None
    return wrapped


def probability_table(probs: list[list[float]]) -> pd.DataFrame:
    """q(c|x) (or the policy p(c|context)) as bars: one row per (group, component), coloured by group."""
    return pd.DataFrame([{"component": f"g{g:02d} c{k:02d}", "group": f"group {g}", "probability": p}
                         for g, row in enumerate(probs) for k, p in enumerate(row)])


def probability_bars(label: str) -> gr.BarPlot:
    """The plot of a `probability_table`."""
    return gr.BarPlot(x="component", y="probability", color="group", y_lim=[0, 1], sort=None, label=label,
                      x_label_angle=-60)


def components_tab(explorer: ComponentExplorer) -> None:
    config = explorer.config
    labels = explorer.label_names()

    def component_choices(group) -> list[tuple[str, int]]:
        return [(name, k) for k, name in enumerate(explorer.component_names(int(group)))]

    @shown_errors
    def describe(group, component, label):
        if label:
            group, component = explorer.label_component(label)
            facts = "" if component is None else explorer.facts_markdown(group, component)
            return f"**{label}** fixes a latent of group {group}.\n\n{facts}", explorer.picture(group, component)
        group, component = int(group), int(component)
        return explorer.facts_markdown(group, component), explorer.picture(group, component)

    @shown_errors
    def generate(group, component, label, count, do_sample, temperature, top_p, seed):
        sentences = explorer.generate(group=int(group), component=int(component), label=label or None,
                                      num_sentences=int(count), do_sample=bool(do_sample),
                                      temperature=float(temperature), top_p=float(top_p), seed=int(seed))
        return "\n".join(sentences), *describe(group, component, label)

    with gr.Row():
        with gr.Column(scale=1):
            group = gr.Dropdown(choices=[(f"group {g}", g) for g in range(config.num_groups)], value=0,
                                label="Group", elem_id="group")
            component = gr.Dropdown(choices=component_choices(0), value=0, label="Component", elem_id="component")
            label = gr.Dropdown(choices=[("(none: the component above)", "")] + labels, value="",
                                label="Or a label", visible=bool(labels), elem_id="label")
            count = gr.Slider(1, 50, value=10, step=1, label="Sentences")
            do_sample = gr.Checkbox(False, label="Sample words (else greedy, as the paper)")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature (sampling)")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (sampling)")
            seed = gr.Number(0, precision=0, minimum=0, label="Seed")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Column(scale=2):
            sentences = gr.Textbox(label="Generated sentences", lines=10, elem_id="generated")
            facts = gr.Markdown(explorer.facts_markdown(0, 0), elem_id="facts")
        with gr.Column(scale=2):
            picture = gr.Image(explorer.picture(0, 0), type="filepath", label="Latent space of the group",
                               show_label=False, elem_id="picture")
    group.change(lambda g: gr.Dropdown(choices=component_choices(g), value=0), inputs=group, outputs=component,
                 api_visibility="private")
    component.change(describe, inputs=[group, component, label], outputs=[facts, picture], api_name="describe")
    label.change(describe, inputs=[group, component, label], outputs=[facts, picture], api_visibility="private")
    button.click(generate, inputs=[group, component, label, count, do_sample, temperature, top_p, seed],
                 outputs=[sentences, facts, picture], api_name="generate")


def read_tab(explorer: ComponentExplorer) -> None:
    @shown_errors
    def read(text, count, seed):
        result = explorer.read(text, num_sentences=int(count), seed=int(seed))
        best = "\n".join(f"- group {g}: component {name}" for g, name in enumerate(result["best"]))
        return (probability_table(result["probs"]), f"**Most probable components**\n\n{best}",
                result["reconstruction"], "\n".join(result["resampled"]))

    with gr.Row():
        with gr.Column(scale=1):
            text = gr.Textbox(label="A sentence", lines=2, elem_id="sentence")
            count = gr.Slider(1, 20, value=5, step=1, label="Sentences from the same components")
            seed = gr.Number(0, precision=0, minimum=0, label="Seed")
            button = gr.Button("Read", variant="primary", elem_id="read")
        with gr.Column(scale=2):
            bars = probability_bars("q(c|x) per group")
            best = gr.Markdown()
            reconstruction = gr.Textbox(label="Reconstruction (from the posterior mode)")
            resampled = gr.Textbox(label="Same components, a new z", lines=5)
    button.click(read, inputs=[text, count, seed], outputs=[bars, best, reconstruction, resampled],
                 api_name="read_sentence")


def between_tab(explorer: ComponentExplorer) -> None:
    @shown_errors
    def between(first, second, steps):
        return "\n".join(f"{t:.2f}  {text}" for t, text in explorer.between(first, second, steps=int(steps)))

    with gr.Row():
        with gr.Column(scale=1):
            first = gr.Textbox(label="First sentence", elem_id="first")
            second = gr.Textbox(label="Second sentence", elem_id="second")
            steps = gr.Slider(2, 20, value=6, step=1, label="Points on the line")
            button = gr.Button("Decode the line", variant="primary", elem_id="between")
        with gr.Column(scale=2):
            line = gr.Textbox(label="Greedy sentences at (1 - t) mean1 + t mean2", lines=12)
    button.click(between, inputs=[first, second, steps], outputs=line, api_name="between")


def conversation_tab(explorer: ComponentExplorer, conversation: ConversationExplorer) -> None:
    groups = range(explorer.config.num_groups)

    @shown_errors
    def respond(text, *chosen):
        result = conversation.respond(text, [int(k) for k in chosen])
        action = ", ".join(f"group {g}: {explorer.component_names(g)[k]}" for g, k in enumerate(result["action"]))
        return (probability_table(result["policy"]), f"**The policy's action**: {action}", result["response"],
                result["chosen_response"])

    with gr.Row():
        with gr.Column(scale=1):
            text = gr.Textbox(label="Conversation: one turn per line, user first, ending with the user's turn",
                              lines=5, elem_id="conversation")
            chosen = [gr.Dropdown(choices=[(name, k) for k, name in enumerate(explorer.component_names(g))], value=0,
                                  label=f"Your action: component of group {g}") for g in groups]
            button = gr.Button("Respond", variant="primary", elem_id="respond")
        with gr.Column(scale=2):
            bars = probability_bars("p(c|context) per group: the policy")
            action = gr.Markdown()
            response = gr.Textbox(label="Response through the policy's action (greedy)")
            chosen_response = gr.Textbox(label="Response through your action (greedy)")
    button.click(respond, inputs=[text, *chosen], outputs=[bars, action, response, chosen_response],
                 api_name="respond")


def build_app(explorer: ComponentExplorer, *, title: str,
              conversation: ConversationExplorer | None = None) -> gr.Blocks:
    """The page: a title, the model's shape, the three tabs, and the Conversation tab for a dialog model."""
    config = explorer.config
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\n\n{config.paper_name}: {config.num_groups} group(s) x {config.num_components} "
                    f"components, d = {config.latent_size}. {INTRO}")
        with gr.Tab("Components"):
            components_tab(explorer)
        with gr.Tab("Read a sentence"):
            read_tab(explorer)
        with gr.Tab("Between two sentences"):
            between_tab(explorer)
        if conversation is not None:
            with gr.Tab("Conversation"):
                conversation_tab(explorer, conversation)
    return app


def explorer_app(model, tokenizer, placement: Placement, *, title: str) -> gr.Blocks:
    """The app of any model of the package: a dialog model's components are its response VAE's (`placement` made
    by it, a typed sentence read as an assistant's response), and its conversations get a tab of their own."""
    dialog = is_dialog_model(model)
    explorer = ComponentExplorer(response_vae(model), tokenizer, placement, speaker="assistant" if dialog else None)
    return build_app(explorer, title=title, conversation=ConversationExplorer(model, tokenizer) if dialog else None)


def space_app(model_id: str, placement_file: str) -> gr.Blocks:
    """The page a Space serves: the model loaded by its Hub id, the sentences placed when the Space was written."""
    model, tokenizer = load_model_and_tokenizer(model_id)
    return explorer_app(model, tokenizer, Placement.load(placement_file), title=f"DEM-VAE explorer: {model_id}")


__all__ = ["build_app", "explorer_app", "probability_table", "space_app"]
