"""course_utils: the shared code of *Diffusion, from scratch*.

One module per concept, each taught in a notebook:

=================  ==========================================================
profiles           budgets per run profile (smoke / cpu / full)      -- 00
device             device choice, seeding, CPU-seeded noise          -- 00
paths              where data, checkpoints and deliverables live     -- 00
data               real MNIST, offline, hash-checked                 -- 00
validation         one checker per kind of input, extract()          -- all
checkpoint         RunConfig, atomic saves, the one load-or-train    -- 00
training           training loop, EMA, resume, learning-rate schedule -- 00, 04
progress           progress bars of long loops (hidden in smoke)      -- all
plotting           labelled image grids, loss curves, GIFs           -- all
metrics            classifier, class accuracy, Frechet distance      -- 00
checks             exercise checks                                   -- all
deliverables       graded samples files, the best guidance weight    -- 04-07
vae, gan, recap    the VAE and the GAN of the recap, their training  -- 01
schedules          forward process q(x_t | x_0), noise schedules     -- 02
baselines          Gaussian-blur denoiser, PSNR                      -- 02, 03
denoiser           a plain UNet as a one-step denoiser               -- 03
unet               the diffusion UNet (time, class, attention)       -- 04, 05, 07
diffusion          L_simple, train_diffusion, loading a trained UNet -- 04-07
samplers           DDPM/DDIM steps and schedulers, CFG, sample loops -- 04-06
guidance           classifier guidance with a noise-aware classifier -- 05
editing            DDIM inversion, SDEdit, inpainting, anagrams      -- 06
autoencoder        the KL autoencoder of latent diffusion            -- 07
latent             latent diffusion glue                             -- 07
=================  ==========================================================

Where to change what: how checkpoints are matched -- ``checkpoint`` (``RunConfig.identity``);
the DDPM and DDIM updates -- ``samplers`` (``ddpm_step``, ``ddim_step``); input checks --
``validation``; the graded samples format -- ``deliverables``.

The command line (run the notebooks, sample digits, student release, grading) is the sibling
package ``course_tools``, which imports this one; nothing here imports it.
"""
from .checkpoint import CheckpointError, RunConfig, load_checkpoint, load_or_train, save_checkpoint
from .data import DataFileError, MNISTDataset, TensorLoader, load_mnist, to_uint8, to_unit, verify_mnist
from .device import cpu_generator, describe_environment, get_device, randn, seed_everything
from .paths import deliverables_dir, output_dir
from .plotting import plot_losses, save_gif, show_images
from .profiles import Profile, get_profile
from .training import EMA, train

__version__ = "0.1.0"
