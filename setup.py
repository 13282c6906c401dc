"Packaging from settings.ini (nbdev 2 layout): the one place the pins live."
from configparser import ConfigParser
import setuptools, shlex

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
req = lambda k: shlex.split(cfg.get(k, ''))
licenses = {'apache2': 'Apache-2.0'}
extras = {k[len('extra_'):].replace('_', '-'): req(k) for k in cfg if k.startswith('extra_')}
extras['dev'] = req('dev_requirements')

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    author=cfg['author'], author_email=cfg['author_email'], license=licenses[cfg['license']],
    classifiers=['Development Status :: 3 - Alpha', 'Intended Audience :: Science/Research',
                 'Natural Language :: English', 'Programming Language :: Python :: 3'],
    url=cfg['git_url'], packages=setuptools.find_packages(include=['orion_nb', 'orion_nb.*']),
    include_package_data=True, install_requires=req('requirements'), extras_require=extras,
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
