"""What the demo's Conversation tab computes for a dialog model (`DEMVAEForDialogGeneration`): the policy
p(c_g | context) of a typed conversation, the response generated through the policy's action, and the response
generated through an action the user picks. The conversation goes through the tokenizer's chat template, as a user
of the model would write it."""

import torch

from modeling_demvae.conversation import split_conversations

ROLES = ("user", "assistant")


def conversation_messages(text: str) -> list[dict]:
    """One turn per line, alternating user and assistant from the user's, ending with the user's turn to answer."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        raise ValueError("type a conversation: one turn per line, the user's first, the last one the user's.")
    if len(lines) % 2 == 0:
        raise ValueError(f"the conversation has {len(lines)} turns, so its last is the assistant's; the assistant "
                         "answers the user: end with a user turn (an odd number of lines).")
    return [{"role": ROLES[index % 2], "content": line} for index, line in enumerate(lines)]


class ConversationExplorer:
    """A dialog model in eval mode and its tokenizer (with the chat template)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.response_config = model.config.response_config

    def conversation_ids(self, text: str) -> dict:
        """The conversation as one sequence, the assistant's turn left open (`apply_chat_template`)."""
        return self.tokenizer.apply_chat_template(conversation_messages(text), add_generation_prompt=True,
                                                  return_dict=True, return_tensors="pt")

    def policy(self, conversation: dict) -> torch.Tensor:
        """p(c_g | context): (G, K) of the conversation's context turns."""
        context_ids, context_mask, _, _ = split_conversations(conversation["input_ids"],
                                                              conversation["attention_mask"], self.model.config)
        with torch.no_grad():
            return self.model.policy(context_ids, context_mask)[0]

    def response(self, conversation: dict, component=None) -> tuple[str, list[int]]:
        """The greedy response and the action (one component per group) it was decoded from: the policy's, or
        `component`."""
        output = self.model.generate(**conversation, component=component, return_dict_in_generate=True)
        new_tokens = output.sequences[0, conversation["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip(), output.components[0].tolist()

    def respond(self, text: str, chosen: list[int]) -> dict:
        """The policy (G lists of K floats), its action and response, and the response of the `chosen` action."""
        groups, size = self.response_config.num_groups, self.response_config.num_components
        if len(chosen) != groups or not all(isinstance(k, int) and 0 <= k < size for k in chosen):
            raise ValueError(f"choose one component in [0, {size}) for each of the {groups} groups, got {chosen!r}.")
        conversation = self.conversation_ids(text)
        response, action = self.response(conversation)
        chosen_response, _ = self.response(conversation, component=chosen)
        return {"policy": self.policy(conversation).tolist(), "action": action, "response": response,
                "chosen_response": chosen_response}


__all__ = ["ConversationExplorer", "conversation_messages"]
