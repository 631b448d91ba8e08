"""Video GRPO Studio's Gradio app. Talks to the engine only through config files, the
`vgrpo train` subprocess and the run database."""
